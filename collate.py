"""Batches: how a row becomes the model's inputs and labels (the design card's `collate.py`).

The implementation is qwen3_smvl/data/collate.py; this module re-exports it so that code written
against the card (`from collate import Collator`) keeps working. Nothing in qwen3_smvl imports it.
"""

from qwen3_smvl.data.collate import *  # noqa: F401,F403
