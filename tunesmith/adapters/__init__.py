"""Adapters: how each kind is built on a base model, saved, loaded back, and our own bottleneck module."""
