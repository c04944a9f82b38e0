"""LoRA adapters on the grafted model through peft, and the merge into a standalone checkpoint.

Targets are a regex matched against whole module names, anchored at `model.text_model.`, so a bare
`q_proj` (which would also hit SigLIP's attention) cannot slip through; the vision tower gets adapters
only with `lora_vision`. Parts that train in full alongside (the connector) are peft's
`modules_to_save`, so checkpoints and the adapter directory hold them too.
"""

import re

import torch
from peft import LoraConfig, get_peft_model

from qwen3_smvl.training.train_config import ConfigError, lora_parts

TEXT_LINEAR_LAYERS = r"model\.text_model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj"
VISION_LINEAR_LAYERS = r"model\.vision_model\.encoder\.layers\.\d+\.(self_attn\.\w+_proj|mlp\.fc\d+)"
PART_MODULES = {"vision": "model.vision_model", "connector": "model.connector", "text": "model.text_model"}
MERGE_TOLERANCE = 1e-4  # largest logit difference allowed, relative to the largest logit (float32)
ADAPTER_DIR = "adapter"


class MergeError(RuntimeError):
    """The merged model does not compute what the adapter model computes."""


def target_pattern(model_args):
    if model_args.lora_target:
        return model_args.lora_target
    return f"{TEXT_LINEAR_LAYERS}|{VISION_LINEAR_LAYERS}" if model_args.lora_vision else TEXT_LINEAR_LAYERS


def check_targets(model, pattern, allowed_parts):
    """Refuses a pattern that matches nothing, a non-Linear module, or a part without LoRA."""
    matched = {name: module for name, module in model.named_modules() if re.fullmatch(pattern, name)}
    if not matched:
        raise ConfigError(f"lora_target {pattern!r} matches no module; it must match whole module names such as "
                          "'model.text_model.layers.0.self_attn.q_proj'")
    allowed = tuple(PART_MODULES[part] + "." for part in allowed_parts)
    for name, module in matched.items():
        if not name.startswith(allowed):
            raise ConfigError(f"lora_target {pattern!r} matches {name}, outside the parts with LoRA "
                              f"({', '.join(sorted(allowed_parts))}; lora_vision: true adds the vision tower)")
        if not isinstance(module, torch.nn.Linear):
            raise ConfigError(f"lora_target {pattern!r} matches {name}, a {type(module).__name__}, not a Linear layer")


def add_adapters(model, model_args, full_parts, seed=0):
    """The model wrapped by peft: LoRA on the targeted Linear layers (base weights frozen, adapters
    initialised from `seed`) and the `full_parts` trained in full as modules_to_save."""
    pattern = target_pattern(model_args)
    check_targets(model, pattern, lora_parts(model_args))
    config = LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        target_modules=pattern, modules_to_save=[PART_MODULES[part] for part in full_parts] or None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def logits_on(model, probe):
    with torch.no_grad():
        return model(**probe).logits.float()


def merge_verified(peft_model, probe):
    """The base model with the adapters merged into its weights, in float32 (a merge into bf16
    weights would round). Refuses to return it unless its logits on `probe` equal the adapter
    model's within MERGE_TOLERANCE."""
    peft_model.eval().float()
    expected = logits_on(peft_model, probe)
    merged = peft_model.merge_and_unload()
    difference = (logits_on(merged, probe) - expected).abs().max().item()
    allowed = MERGE_TOLERANCE * expected.abs().max().item()
    if not difference <= allowed:
        raise MergeError(f"the merged model's logits differ from the adapter model's by {difference:.3g} "
                         f"(allowed {allowed:.3g}): the merge lost or changed the adapters; the adapter itself "
                         f"is saved under {ADAPTER_DIR}/")
    return merged
