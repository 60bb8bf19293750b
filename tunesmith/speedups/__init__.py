"""Optional speed-ups: fused LoRA and MLP kernels, packed attention, pinned host memory."""
