"""The attn_implementation key: applied to the model, switched to per-sample SDPA under packing, and
refused before anything loads where it cannot run (naming the package or device)."""

import pytest
import torch
from huggingface_hub import constants
from transformers import TrainingArguments

from qwen3_smvl.training import attention
from qwen3_smvl.training.run import build_collator, load_model
from qwen3_smvl.training.train_config import DataArguments, ModelArguments

from test_train import config, run  # noqa: F401  (the short CPU run's config fixture)

CPU_REFUSALS = [
    ("flash_attention_2", "attn_implementation: 'flash_attention_2' needs a CUDA GPU and none is visible here"),
    ("kernels-community/flash-attn3", "needs a CUDA GPU and none is visible here"),
    ("flash_attn", "attn_implementation: 'flash_attn' is not one of ('sdpa', 'eager', 'flash_attention_2'"),
]


@pytest.mark.parametrize("name, message", CPU_REFUSALS)
def test_refused_before_loading_on_a_cpu_machine(tmp_path, config, name, message):  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without a GPU")
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, "attn_implementation": name})
    assert message in str(stop.value)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def with_a_gpu(monkeypatch):
    """What the checks see on a GPU machine (the refusals below are about packages and the hub)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def bf16_args(tmp_path, **settings):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none", **settings)


def test_flash_attention_without_its_package_or_kernels_names_both(tmp_path, with_a_gpu, monkeypatch):
    monkeypatch.setitem(attention.FLASH_PACKAGES, "flash_attention_2", ("flash-attn", lambda: False))
    real_find_spec = attention.importlib.util.find_spec
    monkeypatch.setattr(attention.importlib.util, "find_spec",
                        lambda name, *args: None if name == "kernels" else real_find_spec(name, *args))
    with pytest.raises(attention.ConfigError, match="needs flash-attn installed, or the `kernels` package"):
        attention.check_attention("flash_attention_2", bf16_args(tmp_path, bf16=True, use_cpu=True))
    with pytest.raises(attention.ConfigError, match="`kernels` package is not installed"):
        attention.check_attention("kernels-community/flash-attn3", bf16_args(tmp_path, bf16=True, use_cpu=True))


def test_hub_kernel_offline_and_not_cached_is_refused(tmp_path, with_a_gpu, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(attention, "kernel_cached", lambda repo: False)
    with pytest.raises(attention.ConfigError, match="kernel 'kernels-community/flash-attn3' is not in the Hugging Face "
                                                    "cache and the hub is offline"):
        attention.check_attention("kernels-community/flash-attn3@v1", bf16_args(tmp_path, bf16=True, use_cpu=True))
    monkeypatch.setattr(attention, "kernel_cached", lambda repo: True)
    attention.check_attention("kernels-community/flash-attn3@v1", bf16_args(tmp_path, bf16=True, use_cpu=True))


def test_flash_attention_needs_half_precision(tmp_path, with_a_gpu):
    with pytest.raises(attention.ConfigError, match="computes in bf16 or fp16 only: set bf16: true"):
        attention.check_attention("flash_attention_2", bf16_args(tmp_path, use_cpu=True))


@pytest.mark.parametrize("name, packed", [("eager", "eager"), (None, attention.PER_SAMPLE_SDPA),
                                          ("sdpa", attention.PER_SAMPLE_SDPA)])
def test_the_key_sets_the_models_attention_and_packing_keeps_its_choice(tmp_path, tiny_smolvlm_dir, tiny_qwen_dir,
                                                                         name, packed):
    model_args = ModelArguments(smolvlm_path=str(tiny_smolvlm_dir), qwen_path=str(tiny_qwen_dir),
                                attn_implementation=name)
    model, processor = load_model(model_args, bf16_args(tmp_path, use_cpu=True))
    assert model.config._attn_implementation == (name or "sdpa")
    collator = build_collator(processor, DataArguments(packing=True), model)
    assert model.config.text_config._attn_implementation == packed and collator.attention == packed
