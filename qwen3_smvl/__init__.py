"""Qwen3-SmVL's library: the graft, inference, tiny test checkpoints; data/, training/, evaluation/.

The commands at the repository root import this package; nothing here imports a root command."""
