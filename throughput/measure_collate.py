"""Collator throughput and padding waste at SmolVLM2's real image geometry (no model weights needed).

    python throughput/measure_collate.py [--seconds 6]

Processor: SmolVLM2's image processor config and the real Qwen3 tokenizer from ../shared/assets when
present, else qwen3_smvl/tiny.py's real-geometry processor and the stand-in tokenizer at Qwen3's ids. Rows: a
cocoqa-like mix (short questions, 1-3 word answers) on the real photo when present, else synthetic
images at the_cauldron-like sizes, all given undecoded ({"bytes", "path"}) as the trainer feeds them.
Targets (not asserted): >= 6 samples/s per CPU thread, >= 99% real tokens at batch 1 with "longest".
"""

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft, tiny  # noqa: E402
from qwen3_smvl.data.collate import Collator  # noqa: E402
from qwen3_smvl.data.the_cauldron import question_row  # noqa: E402

QA = [
    ("What is the color of the dog?", "brown"), ("How many dogs are there?", "three"),
    ("What are the dogs lying on?", "grass"), ("What animal is shown?", "dogs"),
    ("What is the dog on the left doing?", "lying down"), ("Where are the dogs?", "in a field"),
    ("What color is the collar?", "red"), ("Is this photo taken outdoors?", "yes"),
]
SYNTHETIC_SIZES = [(640, 480), (500, 375), (1024, 768), (480, 640), (640, 427)]


def build_processor(workdir):
    """SmolVLM2's processor at the real geometry, built as stitch.py builds it; returns (processor, origin)."""
    smolvlm, qwen = ASSETS / "smolvlm2-256m-video-instruct", ASSETS / "qwen3-0.6b"
    origin = []
    if not (smolvlm / "preprocessor_config.json").is_file():
        smolvlm = tiny.build_tiny_smolvlm(workdir / "smolvlm", geometry="real")
        origin.append("qwen3_smvl/tiny.py real geometry")
    else:
        origin.append("SmolVLM2 image processor config")
    if not (qwen / "vocab.json").is_file():
        qwen = workdir / "tokenizer"
        tiny.build_standin_tokenizer(qwen, base_vocab_size=tiny.QWEN3_BASE_VOCAB)
        origin.append("stand-in tokenizer")
    else:
        origin.append("Qwen3 tokenizer")
    tokenizer = graft.load_tokenizer(qwen)
    processor = graft.build_processor(smolvlm, tokenizer, AutoConfig.from_pretrained(smolvlm))
    return processor, " + ".join(origin)


def synthetic_jpeg(size, seed):
    """Noise over a gradient, JPEG-encoded like COCO's photos."""
    rng = np.random.default_rng(seed)
    width, height = size
    gradient = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    pixels = np.clip(gradient * 0.6 + rng.integers(0, 100, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image_files():
    photo = ASSETS / "images" / "dog.png"
    if photo.is_file():
        return [photo.read_bytes()], "real photo dog.png"
    return [synthetic_jpeg(size, seed) for seed, size in enumerate(SYNTHETIC_SIZES)], "synthetic JPEGs " + ", ".join(
        f"{w}x{h}" for w, h in SYNTHETIC_SIZES)


def make_rows(files, count):
    return [
        question_row([{"bytes": files[i % len(files)], "path": None}], *QA[i % len(QA)], "cocoqa")
        for i in range(count)
    ]


def measure(collator, rows, batch_size, seconds, windows=3):
    """Samples per second (the best of `windows` timing windows, as other processes on the machine only
    ever slow it down), and the fraction of non-padding tokens over all of them."""
    collator(rows[:batch_size])  # warm-up
    samples = real = total = 0
    speeds = []
    for _ in range(windows):
        start, counted = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / windows:
            first = samples % len(rows)  # len(rows) is a multiple of every batch size measured
            batch = collator(rows[first:first + batch_size])
            counted += len(batch["input_ids"])
            samples += len(batch["input_ids"])
            real += int(batch["attention_mask"].sum())
            total += batch["attention_mask"].numel()
        speeds.append(counted / (time.perf_counter() - start))
    return max(speeds), real / total, total / samples


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="time per configuration")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as workdir:
        processor, origin = build_processor(Path(workdir))
    files, images = image_files()
    rows = make_rows(files, 64)
    print(f"processor: {origin}; images: {images}")
    print(f"image processor: {type(processor.image_processor).__name__}, backend "
          f"{Collator(processor).image_backend}; features per tile: {processor.image_seq_len}\n")
    print(f"{'padding':<11} {'batch':>5} {'threads':>7} {'samples/s':>9} {'per thread':>10} {'real tokens':>11} "
          f"{'tokens/sample':>13}")
    results = {}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for padding in ("max_length", "longest"):
            for batch_size in (1, 4):
                collator = Collator(processor, max_length=2048, padding=padding)
                speed, real, length = measure(collator, rows, batch_size, args.seconds)
                results[threads, padding, batch_size] = speed, real
                print(f"{padding:<11} {batch_size:>5} {threads:>7} {speed:>9.2f} {speed / threads:>10.2f} "
                      f"{real:>10.1%} {length:>13.0f}")
    speed, real = results[1, "longest", 1]
    print(f"\ntargets at 1 thread, 'longest', batch 1: {speed:.2f} samples/s (>= 6: {speed >= 6}), "
          f"{real:.1%} real tokens (>= 99%: {real >= 0.99})")
    print("DataLoader workers run single-threaded, so training throughput is about the 1-thread figure "
          "times dataloader_num_workers.")

if __name__ == "__main__":
    main()
