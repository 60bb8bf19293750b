"""The GGUF format: reading a header and a model from it, writing one (types, K-quants, vocabulary)."""
