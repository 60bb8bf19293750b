"""Helpers for tests, benchmarks and the demo (not used by training itself): tiny random-init models with a
real tokenizer (tiny.py) and small synthetic instruction tasks (tasks.py)."""
