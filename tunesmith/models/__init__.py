"""Base models: loading (folder, GGUF, hub id; dtype, 4/8-bit), the dtype a checkpoint stores, extra heads."""
