"""tunesmith: adapt a pre-trained causal language model to a task or domain, measure it, ship it."""

__version__ = "0.1.0"
