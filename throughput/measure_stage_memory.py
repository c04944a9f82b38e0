"""Weights, gradients and AdamW state per GPU for each shipped recipe, counted at the real model size.

    python throughput/measure_stage_memory.py [--smolvlm DIR --qwen DIR] [--gpus N]

Builds the grafted model from the real configs on the `meta` device (no weights, no memory), applies
each recipe's freezing, LoRA and per-part learning rates exactly as train.py does, and counts bytes:
frozen weights in bf16, trained ones in float32 with a float32 gradient and two float32 AdamW
moments. With --gpus N under FSDP2 all of it is divided by N. Activations are not counted (they
depend on sequence length, batch and checkpointing); add them from throughput/measure_train_step.py's peak.
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import SmolVLMForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft  # noqa: E402
from qwen3_smvl.training import train_config, trainable  # noqa: E402

from measure_train_step import default_source  # noqa: E402

RECIPES = ("full_train.yaml", "stage2_lora.yaml", "stage2_full.yaml")
FROZEN_BYTES = 2  # bf16
TRAINED_BYTES = 4 + 4 + 8  # float32 weight, gradient, AdamW's two moments


def meta_model(smolvlm_path, qwen_path):
    smol_config, qwen_config = graft.load_source_configs(smolvlm_path, qwen_path)
    config = graft.build_config(smol_config, qwen_config, graft.load_tokenizer(qwen_path))
    with torch.device("meta"):
        return SmolVLMForConditionalGeneration(config).to(torch.bfloat16)


def static_memory(model):
    """(trained parameters, bytes) of a prepared model; a tied weight counts once."""
    unique = {id(p): p for p in model.parameters()}.values()
    trained = sum(p.numel() for p in unique if p.requires_grad)
    frozen = sum(p.numel() for p in unique if not p.requires_grad)
    return trained, trained * TRAINED_BYTES + frozen * FROZEN_BYTES


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=default_source("smolvlm2-256m-video-instruct", graft.DEFAULT_SMOLVLM))
    parser.add_argument("--qwen", default=default_source("qwen3-0.6b", graft.DEFAULT_QWEN))
    parser.add_argument("--gpus", type=int, default=1, help="FSDP2 ranks sharing the state (1: one GPU / DDP)")
    args = parser.parse_args()
    print(f"{args.qwen} + {args.smolvlm}; per GPU with {args.gpus} GPU(s); activations not included")
    print(f"{'recipe':<20}{'trained params':>16}{'weights+grads+AdamW GiB':>26}")
    for recipe in RECIPES:
        model_args, _, _, training_args = train_config.parse_config([str(REPO / recipe), "--use_cpu", "true"])
        parts = trainable.decide(model_args, training_args)
        model = trainable.prepare_trainable(meta_model(args.smolvlm, args.qwen), model_args, parts)
        trained, total = static_memory(model)
        print(f"{recipe:<20}{trained / 1e6:>15.1f}M{total / args.gpus / 2**30:>26.2f}")


if __name__ == "__main__":
    main()
