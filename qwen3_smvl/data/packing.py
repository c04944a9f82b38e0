"""Padding-free packing: whole samples concatenated into one row, each attending only to itself.

- `PackedBatches` groups dataset indices into packs of at most `budget` tokens (by the precomputed
  `length` column): best fit, largest first, within a seeded shuffled window, bins left open across
  windows until full. A pack is a function of (lengths, seed, epoch) only, so a resumed run skips
  to the same pack and every DDP rank computes the same list (accelerate deals packs out to ranks).
- `PackingCollator` turns a pack's rows into one row: the collator's per-sample encodings
  concatenated, `position_ids` restarting at 0 for every sample and no `attention_mask`, from which
  transformers builds a block-diagonal causal mask (SDPA, eager). The varlen implementations attend
  within each sample only, from boundaries the collator computes once per batch on the host:
  flash-attention (`flash_attention_2/3` and hub kernels) gets `cu_seq_lens_*` with `max_length_*`
  as Python ints, `per_sample_sdpa` the samples' lengths as Python ints (`sample_lengths`); no layer
  reads a boundary back from the device. The
  first target of each sample is -100, so no sample predicts a token of another; images stay in
  placeholder order, which is the order SmolVLM places features in.
- `PackingTrainer` feeds the Trainer those packs as batches.
"""

import random
from functools import partial

import torch
from torch.utils.data import DataLoader
from transformers import AttentionInterface, Trainer, TrainerCallback
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.trainer_utils import seed_worker
from transformers.utils.generic import is_flash_attention_requested

from qwen3_smvl.data.collate import IGNORE_INDEX, Collator, Encoded, supervised_logits
from qwen3_smvl.data.lengths import LENGTH_COLUMN

PER_SAMPLE_SDPA = "sdpa_per_sample"
SAMPLE_LENGTHS = "sample_lengths"  # batch key: the packed samples' lengths, Python ints (host side)


def is_varlen(attention):
    """Whether an attention implementation attends per sample from boundaries (flash-attention in any
    form transformers routes through its flash wrapper, hub kernels included, and per_sample_sdpa)
    rather than from a dense mask over the whole row."""
    return attention == PER_SAMPLE_SDPA or is_flash_attention_requested(requested_attention_implementation=attention)


def per_sample_sdpa(module, query, key, value, attention_mask, sample_lengths=None, **kwargs):
    """SDPA on each packed sample's block alone (causal), instead of on the whole row under a dense
    block-diagonal mask whose cost grows with the square of the budget: attention then costs what the
    samples cost unpacked. The lengths are host ints, so no layer waits for the device to split.
    Without them (generation, the vision tower) it is plain SDPA."""
    if sample_lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    sizes = list(sample_lengths)
    # split, not one slice per sample: a slice's backward writes its gradient into a zero tensor of the
    # whole row, once per sample and per q/k/v; split's backward concatenates the blocks' gradients once.
    blocks = [sdpa_attention_forward(module, *block, None, **kwargs)[0]
              for block in zip(query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2))]
    return torch.cat(blocks, dim=1), None


def mask_unless_unpadded(*args, attention_mask=None, **kwargs):
    """SDPA's mask for padded batches; none for a row without padding, which per_sample_sdpa splits at
    the samples' boundaries (or, without boundaries, runs causal): building the dense block-diagonal
    mask of an 8K row would cost more than the attention. Only for full-attention (no sliding window)
    text models, where that is the whole mask."""
    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(PER_SAMPLE_SDPA, per_sample_sdpa)
AttentionMaskInterface.register(PER_SAMPLE_SDPA, mask_unless_unpadded)


class PackedBatches:
    """A batch sampler: lists of dataset indices whose lengths sum to at most `budget` (a longer
    sample goes alone). Sizes vary, so it has no `batch_size`; set_epoch reshuffles."""

    def __init__(self, lengths, budget, seed, window=256):
        self.lengths = [int(length) for length in lengths]
        self.budget, self.seed, self.window = budget, seed, window
        self.epoch = 0
        self._packs = {}

    def set_epoch(self, epoch):
        self.epoch = epoch

    def packs(self, epoch):
        if epoch not in self._packs:
            self._packs = {epoch: self._pack(random.Random(f"{self.seed}-{epoch}"))}
        return self._packs[epoch]

    def _pack(self, rng):
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        packs, open_bins = [], []  # a bin: [free tokens, indices]
        for start in range(0, len(order), self.window):
            window = sorted(order[start:start + self.window], key=lambda index: -self.lengths[index])
            for index in window:
                self._place(index, open_bins, packs)
            smallest = self.lengths[window[-1]]
            closed = [indices for free, indices in open_bins if free < max(smallest, 1)]
            open_bins = [bin_ for bin_ in open_bins if bin_[0] >= max(smallest, 1)]
            rng.shuffle(closed)
            packs += closed
        return packs + [indices for _, indices in open_bins]

    def _place(self, index, open_bins, packs):
        length = self.lengths[index]
        if length >= self.budget:
            packs.append([index])
            return
        fitting = [bin_ for bin_ in open_bins if bin_[0] >= length]
        if fitting:
            best = min(fitting, key=lambda bin_: bin_[0])
            best[0] -= length
            best[1].append(index)
        else:
            open_bins.append([self.budget - length, [index]])

    def __iter__(self):
        return iter(self.packs(self.epoch))

    def __len__(self):
        return len(self.packs(self.epoch))


class PackingCollator(Collator):
    """A pack's rows -> one row (batch of 1) of input_ids, labels, position_ids (+ images)."""

    def __init__(self, processor, attn_implementation=None, **settings):
        super().__init__(processor, **settings)
        self.attention = attn_implementation

    def __call__(self, rows):
        return self.pack(self.encode_batch(rows))

    def pack(self, samples):
        lengths = [len(sample.input_ids) for sample in samples]
        labels = torch.cat([sample.labels for sample in samples])
        starts = torch.tensor([0] + lengths[:-1]).cumsum(0)
        labels[starts] = IGNORE_INDEX  # the previous sample's last position must not predict this token
        batch = {
            "input_ids": torch.cat([sample.input_ids for sample in samples])[None],
            "labels": labels[None],
            "position_ids": torch.cat([torch.arange(length) for length in lengths])[None],
            "use_cache": False,  # with a cache transformers would not read the restarts as sample boundaries
        }
        tiles = [tile for sample in samples for tile in sample.tiles]
        batch.update(self.pad_images([Encoded(batch["input_ids"][0], labels, tiles)]))
        if self.supervised_logits_only:
            batch.update(supervised_logits(batch["labels"]))
        if self.attention == PER_SAMPLE_SDPA:
            batch[SAMPLE_LENGTHS] = lengths
        elif is_varlen(self.attention):
            # all four given, transformers' flash wrapper takes them as they are (no sync to find them)
            boundaries = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32)
            batch.update(cu_seq_lens_q=boundaries, cu_seq_lens_k=boundaries,
                         max_length_q=max(lengths), max_length_k=max(lengths))
        return batch


class EpochOfPacks(TrainerCallback):
    """Tells the packs which epoch begins. The Trainer tells a batch sampler itself, except on DDP
    ranks resuming mid-epoch, where the sampler sits two wrappers deep (skipped batches, rank shard)."""

    def __init__(self):
        self.batches = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.batches is not None:
            self.batches.set_epoch(int(state.epoch or 0))  # a resumed epoch e starts at e + done/steps


class PackingTrainer(Trainer):
    """A Trainer whose training batches are `PackedBatches` packs of the `length` column's rows."""

    def __init__(self, *args, max_tokens_per_batch, packing_window, packing_seed, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_tokens_per_batch, self.packing_window, self.packing_seed = max_tokens_per_batch, packing_window, packing_seed
        self.epoch_of_packs = EpochOfPacks()
        self.add_callback(self.epoch_of_packs)

    def get_train_dataloader(self):
        args = self.args
        batches = PackedBatches(self.train_dataset[LENGTH_COLUMN], self.max_tokens_per_batch, self.packing_seed,
                                self.packing_window)
        self.epoch_of_packs.batches = batches
        workers = args.dataloader_num_workers
        loader = DataLoader(
            self.train_dataset, batch_sampler=batches, collate_fn=self.data_collator, num_workers=workers,
            pin_memory=args.dataloader_pin_memory, persistent_workers=args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
            multiprocessing_context=args.dataloader_multiprocessing_context if workers else None,
            worker_init_fn=partial(seed_worker, num_workers=workers, rank=args.process_index),
        )
        return self.accelerator.prepare(loader)
