"""qwen3_smvl/data/packing.py: a packed row trains exactly like its samples unpacked, and no sample sees another."""

import collections

import pytest
import torch
from transformers import Trainer, TrainingArguments

from qwen3_smvl.data.collate import IGNORE_INDEX, Collator
from qwen3_smvl.data.packing import PER_SAMPLE_SDPA, SAMPLE_LENGTHS, PackedBatches, PackingCollator
from qwen3_smvl.training.trainable import set_trainable

from test_collate import make_row, undecoded

ROWS = [
    make_row("What colour is it?", "red", turns=[("And the border?", "a dark blue line")]),
    make_row("Say hello.", "hello there", images=0),
    make_row("Which colours?", "green and blue", images=2),
    make_row("Colour?", "black"),
]


def connector_weight(model):
    return model.model.connector.modality_projection.proj.weight


def loss_and_gradient(model, batch):
    model.zero_grad()
    output = model(**batch)
    output.loss.backward()
    return output.loss.detach(), connector_weight(model).grad.clone()


@pytest.fixture
def model_and_processor(stitched):
    model, processor = stitched
    set_trainable(model)
    return model.float(), processor


@pytest.mark.parametrize("attention", ["sdpa", "eager", PER_SAMPLE_SDPA])
@pytest.mark.parametrize("supervised_only", [False, True])
def test_packed_loss_and_connector_gradient_equal_unpacked(model_and_processor, attention, supervised_only):
    model, processor = model_and_processor
    settings = dict(max_images=2, supervised_logits_only=supervised_only)
    unpacked = Collator(processor, padding="longest", **settings)(ROWS)
    model.set_attn_implementation(attention)
    packed = PackingCollator(processor, attn_implementation=attention, **settings)(ROWS)
    assert (SAMPLE_LENGTHS in packed) == (attention == PER_SAMPLE_SDPA) and "cu_seq_lens_q" not in packed
    assert packed["input_ids"].shape == (1, int(unpacked["attention_mask"].sum())) and "attention_mask" not in packed
    packed_loss, packed_gradient = loss_and_gradient(model, packed)
    model.set_attn_implementation("eager" if attention == "eager" else "sdpa")
    loss, gradient = loss_and_gradient(model, unpacked)
    assert gradient.abs().sum() > 0
    assert torch.allclose(packed_loss, loss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(packed_gradient, gradient, rtol=1e-5, atol=1e-7)


def test_gradient_accumulation_with_the_trainers_token_normalisation_matches_unpacked(model_and_processor, tmp_path):
    """The Trainer divides each micro-batch's summed loss by the targets of the whole accumulation step."""
    model, processor = model_and_processor
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    micro_batches = [ROWS[:1], ROWS[1:]]  # unequal sizes: a per-batch mean would weight them wrongly
    results = []
    for collator in (Collator(processor, padding="longest", max_images=2, supervised_logits_only=True),
                     PackingCollator(processor, max_images=2, supervised_logits_only=True)):
        batches = [collator(rows) for rows in micro_batches]
        targets = trainer._get_num_items_in_batch(batches, torch.device("cpu"))
        model.zero_grad()
        total = sum(trainer.compute_loss(model, batch, num_items_in_batch=targets) for batch in batches)
        total.backward()
        results.append((total.detach(), int(targets), connector_weight(model).grad.clone()))
    (loss, targets, gradient), (packed_loss, packed_targets, packed_gradient) = results
    assert packed_targets == targets
    assert torch.allclose(packed_loss, loss, rtol=1e-5) and torch.allclose(packed_gradient, gradient, rtol=1e-5, atol=1e-7)


def sample_spans(batch):
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    return list(zip(starts, starts[1:] + [batch["input_ids"].shape[1]]))


@pytest.mark.parametrize("attention", ["sdpa", PER_SAMPLE_SDPA])
def test_changing_one_sample_leaves_the_other_samples_logits_unchanged(model_and_processor, attention):
    model, processor = model_and_processor
    model.set_attn_implementation(attention)
    collator = PackingCollator(processor, max_images=2, attn_implementation=attention)
    changed_middle = {**make_row("Something else, and longer?", "yes", images=2),
                      "images": [undecoded(colour=(250, 250, 0)), undecoded(colour=(0, 0, 0))]}
    logits = []
    for rows in (ROWS, ROWS[:2] + [changed_middle] + ROWS[3:]):
        batch = collator(rows)
        with torch.no_grad():
            output = model(**{key: value for key, value in batch.items() if key != "labels"})
        logits.append([output.logits[0, start:end] for start, end in sample_spans(batch)])
    before, after = logits
    for index in (0, 1, 3):
        assert torch.allclose(before[index], after[index], atol=1e-5), f"sample {index} changed"
    assert before[2].shape != after[2].shape or not torch.allclose(before[2], after[2], atol=1e-3)


def test_each_sample_restarts_positions_and_never_predicts_the_next(processor_only):
    processor = processor_only
    alone = [Collator(processor, padding="longest", max_images=2)([row]) for row in ROWS]
    packed = PackingCollator(processor, max_images=2)(ROWS)
    spans = sample_spans(packed)
    assert len(spans) == len(ROWS)
    for (start, end), single in zip(spans, alone):
        length = int(single["attention_mask"].sum())
        assert end - start == length
        assert torch.equal(packed["input_ids"][0, start:end], single["input_ids"][0, :length])
        assert torch.equal(packed["position_ids"][0, start:end], torch.arange(length))
        assert packed["labels"][0, start] == IGNORE_INDEX  # what the previous sample's last position would predict
        assert torch.equal(packed["labels"][0, start + 1:end], single["labels"][0, 1:length])


def test_image_features_match_placeholders_per_pack(model_and_processor):
    model, processor = model_and_processor
    batch = PackingCollator(processor, max_images=2)(ROWS)
    tiles = batch["pixel_values"].shape[1]
    assert tiles == 4  # 1 + 0 + 2 + 1 images of one tile each, in placeholder order
    placeholders = int((batch["input_ids"] == processor.image_token_id).sum())
    assert placeholders == tiles * processor.image_seq_len
    features = model.get_image_features(batch["pixel_values"], batch["pixel_attention_mask"]).pooler_output
    assert sum(len(f) for f in features) == placeholders
    wrong_order = {**batch, "pixel_values": batch["pixel_values"].flip(1)}  # the model places features in order
    with torch.no_grad():
        assert not torch.allclose(model(**wrong_order).logits, model(**batch).logits)


@pytest.mark.parametrize("attention", ["flash_attention_2", "flash_attention_3", "kernels-community/flash-attn3"])
def test_flash_attention_gets_sequence_boundaries_with_host_side_maxima(processor_only, attention):
    """All four varlen kwargs given, transformers' flash wrapper infers nothing from position_ids (a
    sync per layer); max_length_* are Python ints, as flash_attn_varlen_func takes them."""
    batch = PackingCollator(processor_only, max_images=2, attn_implementation=attention)(ROWS)
    lengths = [end - start for start, end in sample_spans(batch)]
    boundaries = torch.tensor([0] + lengths).cumsum(0).int()
    assert torch.equal(batch["cu_seq_lens_q"], boundaries) and torch.equal(batch["cu_seq_lens_k"], boundaries)
    assert type(batch["max_length_q"]) is int and batch["max_length_q"] == batch["max_length_k"] == max(lengths)
    assert "cu_seq_lens_q" not in PackingCollator(processor_only, max_images=2, attn_implementation="sdpa")(ROWS)


def test_per_sample_sdpa_gets_the_lengths_as_host_ints(processor_only):
    batch = PackingCollator(processor_only, max_images=2, attn_implementation=PER_SAMPLE_SDPA)(ROWS)
    assert batch[SAMPLE_LENGTHS] == [end - start for start, end in sample_spans(batch)]
    assert all(type(length) is int for length in batch[SAMPLE_LENGTHS])


@pytest.fixture
def processor_only(stitched):
    return stitched[1]


def test_packed_batches_hold_every_sample_once_within_the_budget():
    lengths = [(i * 37) % 900 + 50 for i in range(500)] + [3000, 5000]  # two longer than the budget
    batches = PackedBatches(lengths, budget=2048, seed=3, window=64)
    packs = list(batches)
    assert sorted(i for pack in packs for i in pack) == list(range(len(lengths)))
    for pack in packs:
        assert len(pack) == 1 or sum(lengths[i] for i in pack) <= 2048
    assert [500] in packs and [501] in packs
    fill = sum(lengths[:500]) / (2048 * (len(packs) - 2))
    assert fill > 0.95
    assert packs == list(PackedBatches(lengths, budget=2048, seed=3, window=64))  # a resumed run sees the same
    batches.set_epoch(1)
    assert list(batches) != packs and len(batches) == len(list(batches))
    first_pack_sizes = collections.Counter(len(pack) for pack in packs)
    assert len(first_pack_sizes) > 1  # variable-size batches


def test_per_sample_sdpa_keeps_padded_batches_and_generation_exact(model_and_processor):
    """Evaluation batches and the post-training demo run on the same model after packed training."""
    model, processor = model_and_processor
    padded = Collator(processor, padding="longest", max_images=2)(ROWS)
    prompt = {key: value[:1, :20] for key, value in padded.items() if key in ("input_ids", "attention_mask")}
    results = []
    for attention in ("sdpa", PER_SAMPLE_SDPA):
        model.set_attn_implementation(attention)
        with torch.no_grad():
            results.append((model(**padded).loss, model.generate(**prompt, max_new_tokens=5, do_sample=False)))
    (loss, generated), (per_sample_loss, per_sample_generated) = results
    assert torch.allclose(loss, per_sample_loss, rtol=1e-5) and torch.equal(generated, per_sample_generated)
