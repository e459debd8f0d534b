"""The network (tokens -> logits), its checkpoints on disk, and readers of its outputs."""
