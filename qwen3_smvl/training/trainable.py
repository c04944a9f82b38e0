"""Which weights of the grafted model train, and the optimizer parameter groups they form.

The model has three parts: the vision tower, the connector and the text model (with the LM head).
Each trains at its own learning rate (a part that does not train is frozen and left out of the
optimizer). Groups follow nanoGPT: matrices decay, 1-d tensors (norms, biases) do not.
"""

import torch

from qwen3_smvl import graft
from qwen3_smvl.training.train_config import ConfigError

PEFT_PREFIX = "base_model.model."  # what peft puts in front of the wrapped model's parameter names


def train_last_text_layers(model, count):
    """Freezes the text model except its last `count` decoder layers and its final norm; the
    embeddings and the LM head (one weight in a tied model) stay frozen."""
    text_model = model.model.text_model
    layers = len(text_model.layers)
    if not 0 < count <= layers:
        raise ConfigError(f"unfreeze_text_layers: {count} is not between 1 and the text model's {layers} layers")
    model.lm_head.requires_grad_(False)
    text_model.requires_grad_(False)
    for layer in text_model.layers[layers - count:]:
        layer.requires_grad_(True)
    text_model.norm.requires_grad_(True)


def optimizer_groups(model, part_lrs, weight_decay):
    """torch optimizer parameter groups: one per trained part and decay/no-decay, each with its lr.
    Every trainable parameter must belong to a part in `part_lrs` (a frozen part has none)."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = graft.part_of(name.removeprefix(PEFT_PREFIX))
        if part not in part_lrs:
            raise ValueError(f"{name} is trainable but its part '{part}' has no learning rate")
        decays = parameter.ndim >= 2
        key = f"{part} ({'decay' if decays else 'no decay'})"
        group = groups.setdefault(key, {"name": key, "params": [], "lr": part_lrs[part],
                                        "weight_decay": weight_decay if decays else 0.0})
        group["params"].append(parameter)
    return list(groups.values())


def describe(groups):
    """One line per group: part, parameter count, learning rate, weight decay."""
    return [f"optimizer group {group['name']:<22} {sum(p.numel() for p in group['params']):>12,} params  "
            f"lr {group['lr']:.2e}  weight_decay {group['weight_decay']}" for group in groups]


def upcast_trainable(model):
    """Trainable weights of a half-precision model train in float32 (the optimizer's small updates
    vanish in bf16); the frozen backbone stays in its dtype."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.to(torch.float32)
