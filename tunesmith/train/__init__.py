"""The training loop and its pure building blocks: losses, checkpoints, metrics and curves."""
