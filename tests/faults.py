"""Faults planted by tests only: training batches that make the loss NaN."""

import itertools
import math

import torch

from qwen3_smvl.data import collate
from qwen3_smvl.training import grpo


def plant(owner, method, numbers, origins, counted=lambda self: True):
    """Wraps owner.method(self, rows) -> batch: from now on the batches whose numbers (1-based, counting the
    calls `counted` accepts) are in `numbers` get NaN pixel values; `origins[number]` records their rows.
    Returns the undo."""
    for_real, count = getattr(owner, method), itertools.count(1)

    def with_nan(self, rows):
        batch = for_real(self, rows)
        number = next(count) if counted(self) else None
        if number in numbers:
            batch["pixel_values"] = torch.full_like(batch["pixel_values"], math.nan)
            if origins is not None:
                origins[number] = [row["origin"] for row in rows]
        return batch

    setattr(owner, method, with_nan)
    return lambda: setattr(owner, method, for_real)


def plant_nan_batches(numbers, origins=None, collator=collate.Collator):
    """The batches of `collator` (a collator class: the SFT one, or stage dpo's PreferenceCollator) get NaN
    pixels (plant), numbered in this process's collation order."""
    return plant(collator, "__call__", numbers, origins)


def plant_nan_generations(numbers, origins=None):
    """Stage grpo's training generation batches get NaN pixels once generated and scored (plant), so the
    forward of the loss sees them; with num_iterations 1 and TRL's default steps_per_generation
    (gradient_accumulation_steps) batch N is step N's."""
    return plant(grpo.GraftGRPOTrainer, "_generate_and_score_completions", numbers, origins,
                 counted=lambda self: self.model.training)
