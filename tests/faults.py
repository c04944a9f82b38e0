"""Faults planted by tests only: training batches that make the loss NaN."""

import itertools
import math

import torch

from qwen3_smvl.data import collate


def plant_nan_batches(numbers, origins=None):
    """From now on, the collator's batches whose numbers (1-based, in this process's collation order)
    are in `numbers` get NaN pixel values; `origins[number]` records their rows. Returns the undo."""
    collate_for_real, count = collate.Collator.__call__, itertools.count(1)

    def collate_with_nan(self, rows):
        batch, number = collate_for_real(self, rows), next(count)
        if number in numbers:
            batch["pixel_values"] = torch.full_like(batch["pixel_values"], math.nan)
            if origins is not None:
                origins[number] = [row["origin"] for row in rows]
        return batch

    collate.Collator.__call__ = collate_with_nan
    return lambda: setattr(collate.Collator, "__call__", collate_for_real)
