"""Faults planted by tests only: training batches that make the loss NaN."""

import itertools
import math

import torch

from qwen3_smvl.data import collate
from qwen3_smvl.training import grpo


def with_nan_pixels(batch):
    batch["pixel_values"] = torch.full_like(batch["pixel_values"], math.nan)
    return batch


def plant_nan_batches(numbers, origins=None, collator=collate.Collator):
    """From now on, the batches of `collator` (a collator class: the SFT one, or stage dpo's
    PreferenceCollator) whose numbers (1-based, in this process's collation order) are in `numbers` get
    NaN pixel values; `origins[number]` records their rows. Returns the undo."""
    collate_for_real, count = collator.__call__, itertools.count(1)

    def collate_with_nan(self, rows):
        batch, number = collate_for_real(self, rows), next(count)
        if number in numbers:
            batch = with_nan_pixels(batch)
            if origins is not None:
                origins[number] = [row["origin"] for row in rows]
        return batch

    collator.__call__ = collate_with_nan
    return lambda: setattr(collator, "__call__", collate_for_real)


def plant_nan_generations(numbers, origins=None):
    """From now on, stage grpo's training generation batches whose numbers (1-based, in this process's
    order) are in `numbers` get NaN pixel values once generated and scored, so the forward of the loss
    sees them; with num_iterations 1 and TRL's default steps_per_generation (gradient_accumulation_steps)
    batch N is step N's. `origins[number]` records their rows. Returns the undo."""
    trainer, count = grpo.GraftGRPOTrainer, itertools.count(1)
    generate_for_real = trainer._generate_and_score_completions

    def generate_with_nan(self, inputs):
        batch = generate_for_real(self, inputs)
        number = next(count) if self.model.training else None
        if number in numbers:
            batch = with_nan_pixels(batch)
            if origins is not None:
                origins[number] = [row["origin"] for row in inputs]
        return batch

    trainer._generate_and_score_completions = generate_with_nan
    return lambda: setattr(trainer, "_generate_and_score_completions", generate_for_real)
