"""Adapters: one record per kind (unit.py; the kinds in kinds/, registered in kinds/__init__.py), the one reader
of a saved adapter folder's kind (folder.py), how each kind is built on a base model and loaded back (build.py),
and our own bottleneck module (bottleneck.py)."""
