"""Qwen3-SmVL's library: the graft, inference, tiny test checkpoints; data/, training/, evaluation/.

The commands at the repository root import this package; nothing here imports a root command."""

import logging

# peft and TrainingArguments import bitsandbytes when requirements-deploy.txt installed it, and bitsandbytes
# then warns at import, in every command, that an optional hub kernel for 4-bit CPU matmuls cannot be
# loaded (offline, or its publisher unverified): noise for everything but --quantize on a CPU, which
# falls back to its own kernels. Set here, before any module of the package imports peft or transformers.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
