"""Packed boundaries reach every layer without a device-to-host sync: a training step's sync count
(qwen3_smvl/host_syncs.py) does not grow with the number of decoder layers."""

import pytest
import torch
from transformers import AttentionInterface, Trainer, TrainingArguments
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from qwen3_smvl import tiny
from qwen3_smvl.data.packing import PER_SAMPLE_SDPA, PackingCollator
from qwen3_smvl.graft import stitch
from qwen3_smvl.host_syncs import counting_host_syncs
from qwen3_smvl.training.trainable import set_trainable

from test_packing import ROWS


def syncing_sdpa(module, query, key, value, attention_mask, **kwargs):
    """SDPA that reads a value back from the device in every layer, as per_sample_sdpa once did."""
    query.detach()[0, 0, :2, 0].tolist()
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register("syncing_sdpa_for_test", syncing_sdpa)


@pytest.fixture(scope="module")
def models_by_layers(tmp_path_factory, tiny_smolvlm_dir, qwen_tokenizer_dir):
    models = {}
    for layers in (2, 4):
        qwen = tiny.build_tiny_qwen(tmp_path_factory.mktemp(f"qwen{layers}"), qwen_tokenizer_dir, num_layers=layers)
        model, processor = stitch(tiny_smolvlm_dir, qwen)
        set_trainable(model)
        models[layers] = model.float()
    return models, processor


def syncs_per_training_step(model, processor, attention, tmp_path):
    """Syncs in one forward and backward of a packed batch as the Trainer prepares it and computes its loss."""
    model.set_attn_implementation(attention)
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    batch = PackingCollator(processor, max_images=2, attn_implementation=attention, supervised_logits_only=True)(ROWS)
    with counting_host_syncs() as syncs:
        trainer.compute_loss(model, trainer._prepare_inputs(batch)).backward()
    return syncs.total


def test_per_sample_sdpa_adds_no_sync_per_layer(models_by_layers, tmp_path):
    models, processor = models_by_layers
    counts = {layers: syncs_per_training_step(model, processor, PER_SAMPLE_SDPA, tmp_path)
              for layers, model in models.items()}
    assert counts[2] == counts[4], counts


def test_the_count_sees_a_sync_in_every_layer(models_by_layers, tmp_path):
    models, processor = models_by_layers
    counts = {layers: syncs_per_training_step(model, processor, "syncing_sdpa_for_test", tmp_path)
              for layers, model in models.items()}
    assert counts[4] - counts[2] == 2  # two more layers, one more .tolist() each


def test_counts_item_boolean_indexing_and_tolist():
    values = torch.arange(6)
    with counting_host_syncs() as syncs:
        values.sum().item()
        values[values > 2]
        values.tolist()
        values + 1
    assert dict(syncs.counts) == {"_local_scalar_dense": 1, "index": 1, "tolist": 1}
