"""The 60K recipe's training step on a GPU, each throughput lever on and off side by side (a benchmark).

    python throughput/gpu_benchmark.py --steps 5 --out gpu_benchmark.md          # on the GPU, ~2-4 min
    python throughput/gpu_benchmark.py --smolvlm TINY --qwen TINY --edges 32 16 --steps 1   # CPU smoke run

The graft at real shape with random weights (configs from ../shared/assets when present, else
--smolvlm/--qwen), trained as `--recipe` (full_train.yaml) trains it: its trainable parts, bf16,
max_length, max_tokens_per_batch, supervised-only LM head. The rows are a the_cauldron-like mix
(images from 200 px icons to 2048 px photos, short and long answers), so padding wastes what it
wastes in a real run. One step's samples are the recipe's first pack of those rows; the padded case
takes the same samples as one `longest`-padded batch. Per case: ms/step, samples/s, real tokens/s,
useful TFLOP/s and MFU against the device's dense bf16 peak (FLOPs counted by torch's FlopCounterMode
on each sample alone, eager attention: the count packing and padding should both be judged by),
peak memory, and device-to-host syncs per step (qwen3_smvl/host_syncs.py's count; on CUDA also what
torch.cuda.set_sync_debug_mode reports). Levers: padding vs packing, the attention implementation
(per-sample SDPA, dense SDPA, flash-attention 2, a hub flash kernel: skipped with the reason where
they cannot run), Liger's fused kernels (last: it patches classes for the whole process), the image
edge (2048 vs 1024). Then FLOPs and tokens per sample per resolution policy, and the collator's
samples/s per worker and bytes per sample. Needs torch, transformers, peft, accelerate, datasets,
and liger-kernel for the Liger row; no video decoding.
"""

import argparse
import copy
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import SmolVLMForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft  # noqa: E402
from qwen3_smvl.data.collate import Collator  # noqa: E402
from qwen3_smvl.data.packing import PER_SAMPLE_SDPA, PackedBatches, PackingCollator  # noqa: E402
from qwen3_smvl.data.the_cauldron import question_row  # noqa: E402
from qwen3_smvl.host_syncs import counting_host_syncs  # noqa: E402
from qwen3_smvl.training import ConfigError, fused_kernels, train_config, train_processor, trainable  # noqa: E402
from qwen3_smvl.training.attention import check_attention  # noqa: E402

ASSETS = REPO.parent / "shared" / "assets"
ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
             "A800": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12, "RTX 4090": 165e12}
# (image size, question, answer): a the_cauldron-like spread of image sizes and answer lengths.
SHAPES = [((1076, 584), "How many dogs are in the picture?", "three"),
          ((300, 200), "What does this icon show?", "a gear"),
          ((640, 480), "What colour is the bus?", "red"),
          ((2048, 1536), "Describe the scene.", "A busy street at dusk with cars, shops and people walking home."),
          ((800, 1200), "What is written on the sign?", "stop"),
          ((1024, 768), "Which chart bar is highest, and by how much?", "the third one, by about twenty percent")]


def default_source(asset, download):
    return str(ASSETS / asset) if (ASSETS / asset / "config.json").is_file() else download


def mixed_rows(count, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        (width, height), question, answer = SHAPES[index % len(SHAPES)]
        image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        rows.append(question_row([image], question, answer, "cocoqa"))
    return rows


def recipe(path, overrides):
    """The recipe's four argument dataclasses (reporting off), and what it trains."""
    model_args, data_args, run_args, training_args = train_config.parse_config([str(path), "--report_to", "none",
                                                                                *overrides])
    return model_args, data_args, training_args, trainable.decide(model_args, training_args)


def build(smolvlm_path, qwen_path, text_layers, model_args, parts):
    smol_config, qwen_config = graft.load_source_configs(smolvlm_path, qwen_path)
    if text_layers:
        qwen_config.num_hidden_layers = text_layers
    tokenizer = graft.load_tokenizer(qwen_path)
    config = graft.build_config(smol_config, qwen_config, tokenizer)
    with DEVICE:
        model = SmolVLMForConditionalGeneration(config)
    model.to(torch.bfloat16 if ON_GPU else torch.float32)  # bf16 backbone as the checkpoints; trained parts upcast
    model = trainable.prepare_trainable(model, model_args, parts)
    return model, graft.build_processor(smolvlm_path, tokenizer, config)


def policies(edges):
    """Resolution policy name -> the DataArguments keys that set it (a native-resolution policy adds its
    own entry here)."""
    return {f"edge {edge}": {"image_longest_edge": edge} for edge in edges}


def processor_for(processor, keys, data_args):
    processor = copy.deepcopy(processor)
    train_processor.set_image_resolution(processor, dataclasses.replace(data_args, **keys))
    return processor


def on_device(batch):
    return {key: value.to(DEVICE, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()}


def training_step(model, optimizer, batch):
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=ON_GPU):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def synchronize():
    if ON_GPU:
        torch.cuda.synchronize()


def cuda_sync_warnings(step):
    """Syncs torch.cuda.set_sync_debug_mode reports over one step (None on CPU)."""
    if not ON_GPU:
        return None
    synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
            synchronize()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def useful_flops(model, processor, rows, data_args):
    """FLOPs of one training step on each row alone (no padding), eager attention: what any layout of
    these samples must compute at least."""
    attention = model.config._attn_implementation
    model.set_attn_implementation("eager")
    collator = Collator.from_args(processor, data_args, padding="longest", pad_to_multiple_of=1)
    flops = []
    for row in rows:
        batch = on_device(collator([row]))
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=ON_GPU):
                loss = model(**batch).loss
            loss.backward()
        model.zero_grad(set_to_none=True)
        flops.append(counter.get_total_flops())
    model.set_attn_implementation(attention)
    return flops


def measure(model, batch, steps):
    """(seconds per step, peak GiB, syncs counted by dispatch, syncs CUDA reports) over `steps` steps."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = on_device(batch)

    def step():
        training_step(model, optimizer, batch)

    step()  # warm-up: allocator, kernels, autotuning
    with counting_host_syncs() as syncs:
        step()
    cuda_syncs = cuda_sync_warnings(step)
    synchronize()
    if ON_GPU:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if ON_GPU else float("nan")
    del optimizer
    return seconds, peak, syncs.total, cuda_syncs


def cases(edges):
    """(name, policy, layout, attention, liger); Liger last, as it patches classes process-wide."""
    first, *others = [f"edge {edge}" for edge in edges]
    listed = [(f"{first} padded longest, sdpa", first, "padded", "sdpa", False),
              (f"{first} packed, per-sample sdpa", first, "packed", PER_SAMPLE_SDPA, False),
              (f"{first} packed, dense sdpa (block mask)", first, "packed", "sdpa", False),
              (f"{first} packed, eager (block mask)", first, "packed", "eager", False),
              (f"{first} packed, flash_attention_2", first, "packed", "flash_attention_2", False),
              (f"{first} packed, kernels-community/flash-attn3", first, "packed", "kernels-community/flash-attn3",
               False)]
    for policy in others:
        listed += [(f"{policy} padded longest, sdpa", policy, "padded", "sdpa", False),
                   (f"{policy} packed, per-sample sdpa", policy, "packed", PER_SAMPLE_SDPA, False)]
    listed.append((f"{first} packed, per-sample sdpa + liger", first, "packed", PER_SAMPLE_SDPA, True))
    return listed


def refusal(attention, liger, training_args, data_args, tokens):
    """Why a case cannot run here (the checks train.py makes), else None."""
    if attention == "eager" and ON_GPU and tokens > 4096:
        return f"eager's {tokens}x{tokens} fp32 score matrices per head and layer would not fit"
    try:
        if attention != PER_SAMPLE_SDPA:
            check_attention(attention, training_args)
        if liger:
            fused_kernels.check_liger(training_args, data_args)
    except ConfigError as error:
        return str(error)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=default_source("smolvlm2-256m-video-instruct", graft.DEFAULT_SMOLVLM))
    parser.add_argument("--qwen", default=default_source("qwen3-0.6b", graft.DEFAULT_QWEN))
    parser.add_argument("--recipe", default=str(REPO / "full_train.yaml"))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (after a warm-up and a count step)")
    parser.add_argument("--rows", type=int, default=48, help="rows of the mix the packs are drawn from")
    parser.add_argument("--edges", type=int, nargs="+", default=[2048, 1024], help="image_longest_edge levers; the "
                        "first is the recipe's")
    parser.add_argument("--text-layers", type=int, default=0, help="truncate Qwen3 to this many layers (0: all)")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()

    overrides = [] if ON_GPU else ["--bf16", "false"]
    model_args, data_args, training_args, parts = recipe(args.recipe, overrides)
    budget = data_args.max_tokens_per_batch
    model, processor = build(args.smolvlm, args.qwen, args.text_layers, model_args, parts)
    device_name = torch.cuda.get_device_name() if ON_GPU else "cpu"
    peak = next((flops for name, flops in PEAK_BF16.items() if name in device_name), None)
    peak_text = f"MFU against {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "MFU: no peak known for this device"
    lines = [f"device: {device_name}; torch {torch.__version__}; {graft.trainable_summary(model)}",
             f"recipe: {Path(args.recipe).name}: trains {', '.join(parts.rates)}; max_length {data_args.max_length}, "
             f"max_tokens_per_batch {budget}, supervised_logits_only {data_args.supervised_logits_only}; {peak_text}"]

    def report(line=""):
        lines.append(line)
        print(line, flush=True)

    for line in lines:
        print(line)
    rows = mixed_rows(args.rows)
    steps_of, collate_rate, pixel_bytes, flops_per_sample, tokens_per_sample = {}, {}, {}, {}, {}
    for policy, keys in policies(args.edges).items():
        policy_processor = processor_for(processor, keys, data_args)
        encoder = Collator.from_args(policy_processor, data_args, padding="longest")
        start = time.perf_counter()
        samples = [encoder.encode(row) for row in rows]
        collate_rate[policy] = len(rows) / (time.perf_counter() - start)
        pixel_bytes[policy] = statistics.mean(sum(tile.numel() * tile.element_size() for tile in sample.tiles)
                                              for sample in samples)
        lengths = [len(sample.input_ids) for sample in samples]
        pack = PackedBatches(lengths, budget, seed=training_args.seed).packs(0)[0]
        pack_rows = [rows[index] for index in pack]
        flops = useful_flops(model, policy_processor, pack_rows, data_args)
        flops_per_sample[policy] = statistics.mean(flops)
        tokens_per_sample[policy] = statistics.mean(lengths[index] for index in pack)
        steps_of[policy] = (policy_processor, pack_rows, sum(flops), sum(lengths[index] for index in pack))

    report()
    report(f"{'case':<52}{'smp':>4}{'tokens':>7}{'ms/step':>9}{'smp/s':>8}{'tok/s':>8}{'TFLOP/s':>9}{'MFU':>7}"
           f"{'peak GiB':>9}{'syncs/step':>11}{'cuda syncs':>11}")
    best = 0.0
    for name, policy, layout, attention, liger in cases(args.edges):
        policy_processor, pack_rows, flops, real_tokens = steps_of[policy]
        reason = refusal(attention, liger, training_args, data_args, real_tokens)
        if reason:
            report(f"{name:<52}skipped: {reason}")
            continue
        try:  # what the checks cannot foresee (a hub kernel that does not download) costs one row, not the run
            if liger:
                from transformers.integrations.liger import apply_liger_kernel

                apply_liger_kernel(model, fused_kernels.liger_config(training_args, data_args))
            model.set_attn_implementation(attention)
            if layout == "packed":
                batch = PackingCollator.from_args(policy_processor, data_args, attn_implementation=attention)(pack_rows)
            else:
                batch = Collator.from_args(policy_processor, data_args, padding="longest")(pack_rows)
            seconds, peak_gib, syncs, cuda_syncs = measure(model, batch, args.steps)
        except Exception as error:  # noqa: BLE001
            report(f"{name:<52}failed: {type(error).__name__}: {str(error)[:200]}")
            model.set_attn_implementation("sdpa")
            if ON_GPU:
                torch.cuda.empty_cache()
            continue
        samples = len(pack_rows)
        best = max(best, samples / seconds)
        mfu = f"{100 * flops / seconds / peak:>6.1f}%" if peak else f"{'-':>7}"
        report(f"{name:<52}{samples:>4}{batch['input_ids'].numel():>7}{1000 * seconds:>9.1f}{samples / seconds:>8.1f}"
               f"{real_tokens / seconds:>8.0f}{flops / seconds / 1e12:>9.2f}{mfu}{peak_gib:>9.1f}{syncs:>11}"
               f"{'-' if cuda_syncs is None else cuda_syncs:>11}")
        if ON_GPU:
            torch.cuda.empty_cache()

    report()
    report(f"{'resolution policy':<28}{'tokens/sample':>14}{'TFLOP/sample':>13}{'collator smp/s/worker':>22}"
           f"{'float32 tile MB/sample':>23}{'workers for best':>17}{'H2D GB/s at best':>17}")
    for policy in steps_of:
        workers = best / collate_rate[policy]
        report(f"{policy:<28}{tokens_per_sample[policy]:>14.0f}{flops_per_sample[policy] / 1e12:>13.3f}"
               f"{collate_rate[policy]:>22.1f}{pixel_bytes[policy] / 1e6:>23.2f}{workers:>17.1f}"
               f"{best * pixel_bytes[policy] / 1e9:>17.2f}")
    report(f"(best: {best:.1f} samples/s; tokens/sample and TFLOP/sample over one pack of the mix; uint8 tiles "
           "would move a quarter of the bytes)")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
