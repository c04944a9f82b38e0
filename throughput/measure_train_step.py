"""Training-step throughput and memory at the real model size, random weights (a benchmark, not a test).

    python throughput/measure_train_step.py [--steps 10] [--smolvlm DIR --qwen DIR]

Builds the grafted model from the real configs (../shared/assets, or the downloaded checkpoints'
configs) with random weights, freezes all but the connector as the recipe does, and times
forward + backward + AdamW steps on batches the project's collator makes from a real-looking row:
fixed 2K padding (the original), `longest` padding, `longest` with the LM head run only on
supervised positions (train.py's default), and the batch packed into one row (`packing: true`).
On a GPU it runs in bf16 autocast and reports peak memory; on a CPU it runs in float32 (pass
--text-layers 2 for a quick smoke run; --image-longest-edge 1024 for the lower resolution).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import SmolVLMForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft  # noqa: E402
from qwen3_smvl.data.collate import Collator  # noqa: E402
from qwen3_smvl.data.packing import PackingCollator  # noqa: E402
from qwen3_smvl.data.the_cauldron import question_row  # noqa: E402
from qwen3_smvl.training import train_config, trainable  # noqa: E402
from qwen3_smvl.training.attention import attention_for_packing  # noqa: E402

ASSETS = REPO.parent / "shared" / "assets"
ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")


def default_source(asset, download):
    return str(ASSETS / asset) if (ASSETS / asset / "config.json").is_file() else download


def photo():
    path = ASSETS / "images" / "dog.png"
    if path.is_file():
        return Image.open(path).convert("RGB")
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (584, 1076, 3), dtype=np.uint8))


def build(smolvlm_path, qwen_path, text_layers):
    smol_config, qwen_config = graft.load_source_configs(smolvlm_path, qwen_path)
    if text_layers:
        qwen_config.num_hidden_layers = text_layers
    tokenizer = graft.load_tokenizer(qwen_path)
    config = graft.build_config(smol_config, qwen_config, tokenizer)
    with DEVICE:
        model = SmolVLMForConditionalGeneration(config)
    # bf16 backbone on a GPU (as the checkpoints are), connector trained in fp32, as train.py does
    model.to(torch.bfloat16 if ON_GPU else torch.float32)
    trainable.prepare_trainable(model, train_config.ModelArguments(), trainable.Trainable({"connector": 1e-4}))  # the connector only
    return model, graft.build_processor(smolvlm_path, tokenizer, config)


def time_steps(model, batch, steps):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = {key: value.to(DEVICE) if torch.is_tensor(value) else value for key, value in batch.items()}  # use_cache: bool
    autocast = torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=ON_GPU)

    def step():
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernels
    if ON_GPU:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if ON_GPU:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if ON_GPU else float("nan")
    return seconds, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=default_source("smolvlm2-256m-video-instruct", graft.DEFAULT_SMOLVLM))
    parser.add_argument("--qwen", default=default_source("qwen3-0.6b", graft.DEFAULT_QWEN))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--text-layers", type=int, default=0, help="truncate Qwen3 to this many layers (0: all)")
    parser.add_argument("--image-longest-edge", type=int, default=2048, help="image_longest_edge (SmolVLM2's: 2048)")
    args = parser.parse_args()

    model, processor = build(args.smolvlm, args.qwen, args.text_layers)
    print(f"device: {torch.cuda.get_device_name() if ON_GPU else 'cpu'}; {graft.trainable_summary(model)}")
    row = question_row([photo()], "How many dogs are in the picture?", "three", "cocoqa")
    print(f"{'padding':<12}{'LM head on':>14}{'batch':>6}{'tokens/sample':>15}{'s/step':>9}{'samples/s':>11}{'peak GiB':>10}")
    processor.image_processor.size = {"longest_edge": args.image_longest_edge}
    for padding, supervised_only in (("max_length", False), ("longest", False), ("longest", True), ("packed", True)):
        if padding == "packed":  # as train.py packs: per-sample SDPA, sample boundaries in the batch
            attention = attention_for_packing(model)
            collator = PackingCollator(processor, attn_implementation=attention, supervised_logits_only=True)
        else:
            collator = Collator(processor, padding=padding, supervised_logits_only=supervised_only)
        batch = collator([row] * args.batch_size)
        seconds, peak = time_steps(model, batch, args.steps)
        tokens = batch["input_ids"].numel() // args.batch_size
        head = "supervised" if supervised_only else "all"
        print(f"{padding:<12}{head:>14}{args.batch_size:>6}{tokens:>15}{seconds:>9.3f}{args.batch_size / seconds:>11.2f}{peak:>10.2f}")


if __name__ == "__main__":
    main()
