"""`use_liger_kernel` (transformers' TrainingArguments key) on the graft: Liger-Kernel's Triton kernels
for Qwen3's RMSNorm (q/k norms included), RoPE and SwiGLU, which the Trainer applies to the model
(Liger maps `smolvlm`). Refused before anything loads where they cannot run (no CUDA GPU, no Triton,
no liger-kernel).

Liger's fused linear cross-entropy projects every position onto the LM head in chunks and slices the
hidden states by an integer `logits_to_keep`; the collator's supervised-only head (the default) keeps a
boolean mask of the few positions with a target instead. Per ~1K-token sample the supervised head runs
on a handful of positions, where the fused loss would run the 151,936-row head on all of them (about
11% more FLOPs per sample at stage 1), so with `supervised_logits_only` the fused and plain
cross-entropy kernels stay off; without it Liger's defaults apply.
"""

import importlib.util

import torch

from qwen3_smvl.training import ConfigError

LOSS_KERNELS = ("fused_linear_cross_entropy", "cross_entropy")


def check_liger(training_args, data_args):
    """Refuse use_liger_kernel where its kernels cannot run, or a loss kernel the LM head cannot feed."""
    if not torch.cuda.is_available():
        raise ConfigError("use_liger_kernel: Liger's Triton kernels need a CUDA GPU and none is visible here; "
                          "set use_liger_kernel: false")
    if importlib.util.find_spec("triton") is None:
        raise ConfigError("use_liger_kernel: Liger's kernels need Triton, which is not installed (pip install triton)")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("use_liger_kernel needs liger-kernel, which is not installed (pip install liger-kernel)")
    asked = [key for key in LOSS_KERNELS if (training_args.liger_kernel_config or {}).get(key)]
    if asked and data_args.supervised_logits_only:
        raise ConfigError(f"liger_kernel_config: {', '.join(asked)} cannot run with supervised_logits_only: true "
                          "(Liger slices the hidden states by an integer logits_to_keep, the collator keeps a mask "
                          "of the supervised positions); set one of them false")


def liger_config(training_args, data_args):
    """liger_kernel_config with the loss kernels off while the LM head runs on supervised positions only."""
    config = dict(training_args.liger_kernel_config or {})
    if data_args.supervised_logits_only:
        config.update({key: False for key in LOSS_KERNELS})
    return config


def configure_liger(training_args, data_args):
    """Checks use_liger_kernel and sets the liger_kernel_config the Trainer will apply."""
    if training_args.use_liger_kernel:
        check_liger(training_args, data_args)
        training_args.liger_kernel_config = liger_config(training_args, data_args)
