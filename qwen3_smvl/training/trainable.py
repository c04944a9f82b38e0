"""What trains and at which rate: a run's arguments -> frozen parts, LoRA adapters, optimizer groups.

The model has three parts: the vision tower, the connector and the text model (with the LM head).
Each trains at its own learning rate (a part that does not train is frozen and left out of the
optimizer); `decide` reads that, and which parts get LoRA adapters, from the arguments once, and
`prepare_trainable` applies it to a model. Groups follow nanoGPT: matrices decay, 1-d tensors
(norms, biases) do not.

LoRA goes through peft. Targets are a regex matched against whole module names, anchored at
`model.text_model.`, so a bare `q_proj` (which would also hit SigLIP's attention) cannot slip
through; the vision tower gets adapters only with `lora_vision`. Parts that train in full alongside
(the connector) are peft's `modules_to_save`, so checkpoints and the adapter directory hold them
too. Merging the adapters into a standalone model is lora_merge.py's.
"""

import re
from dataclasses import dataclass, field

import torch
from peft import LoraConfig, get_peft_model

from qwen3_smvl.training import ConfigError
from qwen3_smvl.training.text_only_batches import keep_vision_in_every_step

PARTS = ("vision", "connector", "text")
TRAINED_BY_DEFAULT = {"vision": False, "connector": True, "text": False}  # stage 1: the connector alone
PART_PREFIXES = {"model.vision_model.": "vision", "model.connector.": "connector", "model.text_model.": "text",
                 "lm_head.": "text"}
PART_MODULES = {"vision": "model.vision_model", "connector": "model.connector", "text": "model.text_model"}
PEFT_PREFIX = "base_model.model."  # what peft puts in front of the wrapped model's parameter names
TEXT_LINEAR_LAYERS = r"model\.text_model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj"
VISION_LINEAR_LAYERS = r"model\.vision_model\.encoder\.layers\.\d+\.(self_attn\.\w+_proj|mlp\.fc\d+)"


@dataclass(frozen=True)
class Trainable:
    """A run's answer: each trained part's learning rate, and which of them train through LoRA adapters
    (their base weights frozen); the others train in full."""

    rates: dict
    adapted: frozenset = field(default_factory=frozenset)

    @property
    def full(self):
        return {part for part in self.rates if part not in self.adapted}


def decide(model_args, training_args):
    """What trains, read once from a run's arguments; what cannot train as asked is refused. freeze_*
    and *_lr say the same thing (a learning rate of 0 freezes); a contradiction between them is refused."""
    adapted = frozenset(({"text", "vision"} if model_args.lora_vision else {"text"}) if model_args.lora_r else ())
    rates = {}
    for part in PARTS:
        frozen, lr = getattr(model_args, f"freeze_{part}"), getattr(model_args, f"{part}_lr")
        if lr is not None and lr < 0:
            raise ConfigError(f"{part}_lr: {lr} is negative")
        if frozen is not None and lr is not None and frozen == (lr > 0):
            raise ConfigError(f"freeze_{part}: {str(frozen).lower()} contradicts {part}_lr: {lr} "
                              "(a learning rate of 0 freezes a part, any other trains it); drop one of the two")
        trains = lr > 0 if lr is not None else not frozen if frozen is not None else \
            TRAINED_BY_DEFAULT[part] or part in adapted
        if part in adapted and not trains:
            raise ConfigError(f"lora_r: {model_args.lora_r} puts adapters on the {part} model, which "
                              f"freeze_{part}/{part}_lr freezes; unfreeze it or set lora_r: 0")
        if trains:
            rates[part] = lr or training_args.learning_rate
    if not rates:
        raise ConfigError("the vision tower, connector and text model are all frozen: nothing would train")
    if model_args.lora_r < 0 or not 0 <= model_args.lora_dropout < 1:
        raise ConfigError(f"lora_r must not be negative and lora_dropout must be in [0, 1) "
                          f"(got {model_args.lora_r}, {model_args.lora_dropout})")
    if model_args.lora_target and not model_args.lora_r:
        raise ConfigError("lora_target is set but lora_r is 0 (LoRA off)")
    if model_args.unfreeze_text_layers is not None and ("text" not in rates or "text" in adapted):
        raise ConfigError("unfreeze_text_layers needs the text model trained in full (freeze_text: false, "
                          "no LoRA); with LoRA narrow lora_target instead")
    return Trainable(rates, adapted)


def prepare_trainable(model, model_args, trainable, seed=0):
    """Freezes what does not train; with LoRA returns the model wrapped by peft. Trainable weights
    are float32, the frozen backbone keeps its dtype."""
    full = trainable.full
    set_trainable(model, vision="vision" in full, connector="connector" in full, text="text" in full)
    if model_args.unfreeze_text_layers is not None:
        train_last_text_layers(model, model_args.unfreeze_text_layers)
    if trainable.adapted:
        model = add_adapters(model, model_args, trainable, seed)
    upcast_trainable(model)
    return keep_vision_in_every_step(model)


def part_of(name):
    """The part ("vision", "connector" or "text") a parameter belongs to, by its name in the model."""
    part = next((part for prefix, part in PART_PREFIXES.items() if name.startswith(prefix)), None)
    if part is None:
        raise ValueError(f"parameter {name} belongs to no known part ({', '.join(PART_PREFIXES)})")
    return part


def set_trainable(model, vision=False, connector=True, text=False):
    """Choose which parts train; the recipe's default trains only the connector. A tied LM head
    is the input embedding's weight, so it follows `text`."""
    trains = {"vision": vision, "connector": connector, "text": text}
    for name, parameter in model.named_parameters():
        parameter.requires_grad = trains[part_of(name)]


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


def add_adapters(model, model_args, trainable, seed=0):
    """The model wrapped by peft: LoRA on the targeted Linear layers of the adapted parts (base weights
    frozen, adapters initialised from `seed`) and the parts trained in full as modules_to_save."""
    pattern = target_pattern(model_args)
    check_targets(model, pattern, trainable.adapted)
    config = LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        target_modules=pattern, modules_to_save=[PART_MODULES[part] for part in PARTS if part in trainable.full] or None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def upcast_trainable(model):
    """Trainable weights of a half-precision model train in float32 (the optimizer's small updates
    vanish in bf16); the frozen backbone stays in its dtype."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.to(torch.float32)


def optimizer_groups(model, part_lrs, weight_decay):
    """torch optimizer parameter groups: one per trained part and decay/no-decay, each with its lr.
    Every trainable parameter must belong to a part in `part_lrs` (a frozen part has none)."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = part_of(name.removeprefix(PEFT_PREFIX))
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
