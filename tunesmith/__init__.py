"""tunesmith: adapt a pre-trained causal language model to a task or domain, measure it, ship it."""

from tunesmith.third_party_logs import quiet_third_party_notices

__version__ = "0.1.0"

quiet_third_party_notices()
