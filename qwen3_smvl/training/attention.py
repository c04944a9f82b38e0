"""The `attn_implementation` key: which attention the model runs, refused before anything loads where
it cannot run, and switched to per-sample SDPA under packing (same result, no dense mask).

Names: `sdpa` (default), `eager`, `flash_attention_2`, `flash_attention_3`, or a Hugging Face kernels
hub repo (`kernels-community/flash-attn3`, optionally `@revision` / `:kernel`), as transformers reads
them. Flash-attention in every form and per-sample SDPA are varlen: packed rows reach them with the
samples' boundaries (qwen3_smvl/data/packing.py), so no sample attends to another.
"""

import importlib.util
import logging

import torch
from transformers.integrations.hub_kernels import is_kernel
from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_FALLBACK
from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

from qwen3_smvl.data.packing import PER_SAMPLE_SDPA, is_varlen
from qwen3_smvl.training import ConfigError

logger = logging.getLogger(__name__)

BUILT_IN = ("sdpa", "eager")
FLASH_PACKAGES = {"flash_attention_2": ("flash-attn", is_flash_attn_2_available),
                  "flash_attention_3": ("flash-attn-3 (flash_attn_interface)", is_flash_attn_3_available)}


def kernel_cached(repo):
    """Whether the hub kernel `repo` (without @revision / :kernel) is in the local Hugging Face cache."""
    from huggingface_hub import scan_cache_dir

    try:
        return any(cached.repo_id == repo for cached in scan_cache_dir().repos)
    except Exception:  # no cache folder yet
        return False


def check_hub_kernel(name, key="attn_implementation"):
    """A hub kernel needs the `kernels` package, and the hub or a cached copy."""
    from huggingface_hub import constants

    if importlib.util.find_spec("kernels") is None:
        raise ConfigError(f"{key}: '{name}' is a kernels hub name but the `kernels` package is not installed "
                          "(pip install kernels)")
    repo = name.split(":")[0].split("@")[0]
    if constants.HF_HUB_OFFLINE and not kernel_cached(repo):
        raise ConfigError(f"{key}: the kernel '{repo}' is not in the Hugging Face cache and the hub is offline "
                          "(HF_HUB_OFFLINE is set): load it once online, or choose sdpa")


def check_attention(name, training_args):
    """Refuse an attention implementation that cannot run here, naming the missing package or device."""
    if name is None or name in BUILT_IN:
        return
    if not (name in FLASH_PACKAGES or is_kernel(name)):
        raise ConfigError(f"attn_implementation: '{name}' is not one of {BUILT_IN + tuple(FLASH_PACKAGES)} "
                          "nor a kernels hub name (org/repo)")
    if not torch.cuda.is_available():
        raise ConfigError(f"attn_implementation: '{name}' needs a CUDA GPU and none is visible here; use sdpa")
    if not (training_args.bf16 or training_args.fp16):
        raise ConfigError(f"attn_implementation: '{name}' computes in bf16 or fp16 only: set bf16: true")
    if name in FLASH_PACKAGES:
        package, available = FLASH_PACKAGES[name]
        if available():
            return
        if importlib.util.find_spec("kernels") is None:  # transformers falls back to the hub kernel with it
            raise ConfigError(f"attn_implementation: '{name}' needs {package} installed, or the `kernels` package "
                              f"to load {FLASH_ATTN_KERNEL_FALLBACK[name]} from the hub instead")
        name = FLASH_ATTN_KERNEL_FALLBACK[name]
    check_hub_kernel(name)


def set_attention(model, name):
    """The model's attention as the config names it (None: keep the loaded one, sdpa)."""
    if name is not None and name != model.config._attn_implementation:
        model.set_attn_implementation(name)


def attention_for_packing(model):
    """Switch SDPA to per-sample SDPA (same result, without attention over the whole packed row under a
    dense mask) and return the implementation the packed batches are built for."""
    full_attention_only = set(getattr(model.config.text_config, "layer_types", None) or []) <= {"full_attention"}
    if model.config._attn_implementation == "sdpa" and full_attention_only:
        model.set_attn_implementation(PER_SAMPLE_SDPA)
    attention = model.config._attn_implementation
    if not is_varlen(attention):
        logger.info(f"packing with {attention} attention: it runs over the whole packed row (the mask is block-diagonal "
                    "but dense, cost grows with max_tokens_per_batch squared); sdpa and flash-attention attend per sample")
    return attention
