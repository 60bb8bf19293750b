"""`tunesmith serve`: an OpenAI-compatible server for runs, adapters, merged models and GGUF files, with
adapters hot-swapped over one shared base (store.py), batched across adapters (engine.py)."""
