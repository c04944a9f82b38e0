"""A text-only batch beside a trained vision side: the loss and gradients are those of the plain model,
and every trained weight of the vision tower and connector gets a gradient (zero), so ranks agree."""

import copy

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from qwen3_smvl.data import loading
from qwen3_smvl.data.collate import Collator
from qwen3_smvl.training import train_config, trainable

from conftest import REPO


@pytest.mark.parametrize("setting", [
    {"freeze_text": False, "freeze_vision": False},  # stage2_full.yaml: every part trains
    {"lora_r": 4, "lora_dropout": 0.0},  # stage2_lora.yaml: adapters on the text model, the connector in full
    {},  # stage 1: the connector alone
])
def test_text_only_batch_reaches_every_trained_weight_and_changes_nothing(stitched_dir, setting):
    model_args = train_config.ModelArguments(**setting)
    parts = trainable.decide(model_args, train_config.TrainingArguments(output_dir="unused"))
    batch = Collator(AutoProcessor.from_pretrained(stitched_dir), padding="longest")(
        loading.load_text_rows(REPO / "text_eval.jsonl")[:2])
    assert "pixel_values" not in batch

    model = trainable.prepare_trainable(AutoModelForImageTextToText.from_pretrained(stitched_dir), model_args, parts)
    plain = copy.deepcopy(model)
    inner = plain.get_base_model().model if hasattr(plain, "get_base_model") else plain.model
    inner._forward_hooks.clear()  # the same weights without the blank image
    gradients, losses = [], []
    for each in (model, plain):
        loss = each.train()(**batch).loss
        if loss.requires_grad:  # stage 1 without the blank image: nothing trainable in the graph
            loss.backward()
        losses.append(loss.item())
        gradients.append({name: p.grad for name, p in each.named_parameters() if p.requires_grad})
    with_blank, without = gradients
    assert losses[0] == losses[1]
    vision_side = {name for name in with_blank if trainable.part_of(name.removeprefix(trainable.PEFT_PREFIX))
                   in ("vision", "connector")}
    assert vision_side and all(without[name] is None for name in vision_side)  # what left DDP's ranks waiting
    for name, gradient in with_blank.items():
        if name in vision_side:
            assert gradient is not None and not gradient.any(), name
        else:
            assert torch.equal(gradient, without[name]), name
