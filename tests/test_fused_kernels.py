"""use_liger_kernel: refused before loading where its Triton kernels cannot run; with the supervised-only
LM head the Trainer is handed a liger_kernel_config with Liger's loss kernels off."""

import pytest
import torch
from transformers import TrainingArguments

from qwen3_smvl.training import fused_kernels
from qwen3_smvl.training.train_config import DataArguments

from test_train import config, run  # noqa: F401  (the short CPU run's config fixture)


def test_refused_before_loading_without_a_gpu(tmp_path, config):  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without a GPU")
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, "use_liger_kernel": True})
    assert "use_liger_kernel: Liger's Triton kernels need a CUDA GPU and none is visible here" in str(stop.value)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def gpu_with_liger(monkeypatch):
    """What the checks see on a GPU machine with liger-kernel and Triton installed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = fused_kernels.importlib.util.find_spec
    monkeypatch.setattr(fused_kernels.importlib.util, "find_spec",
                        lambda name, *args: object() if name == "liger_kernel" else real_find_spec(name, *args))


def liger_args(tmp_path, kernel_config=None):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, use_liger_kernel=True,
                             liger_kernel_config=kernel_config)


@pytest.mark.parametrize("supervised_only, expected", [
    (True, {"rope": True, "fused_linear_cross_entropy": False, "cross_entropy": False}),
    (False, {"rope": True}),
])
def test_loss_kernels_off_while_the_head_runs_on_supervised_positions(tmp_path, gpu_with_liger, supervised_only,
                                                                       expected):
    training_args = liger_args(tmp_path, {"rope": True})
    fused_kernels.configure_liger(training_args, DataArguments(supervised_logits_only=supervised_only))
    assert training_args.liger_kernel_config == expected


def test_fused_cross_entropy_with_supervised_logits_is_refused(tmp_path, gpu_with_liger):
    training_args = liger_args(tmp_path, {"fused_linear_cross_entropy": True})
    with pytest.raises(fused_kernels.ConfigError, match="fused_linear_cross_entropy cannot run with "
                                                        "supervised_logits_only: true"):
        fused_kernels.configure_liger(training_args, DataArguments())
    fused_kernels.configure_liger(training_args, DataArguments(supervised_logits_only=False))


def test_refused_without_liger_kernel_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = fused_kernels.importlib.util.find_spec
    monkeypatch.setattr(fused_kernels.importlib.util, "find_spec",
                        lambda name, *args: None if name == "liger_kernel" else real_find_spec(name, *args))
    with pytest.raises(fused_kernels.ConfigError, match="needs liger-kernel, which is not installed"):
        fused_kernels.configure_liger(liger_args(tmp_path), DataArguments())
