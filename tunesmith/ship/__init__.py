"""Shipping a trained run: merge an adapter into its base, write an Ollama Modelfile."""
