"""First-load time and peak memory of a large JSONL of your own data (no images decoded or held).

    python throughput/measure_load_jsonl.py [--rows 1000000] [--format llava|messages]

Writes a JSONL of short text rows, each with a relative image path (a handful of small PNGs, so the
existence checks are real), then loads it through data.load_data in a fresh process with an empty
datasets cache (the first load: parse, check, write the arrow cache) and once more (the cached load).
Prints rows, seconds and peak RSS of each load process and of its parsing workers, and the machine's
load average (the dev machine is shared: a load above the core count slows every figure). Targets on the 2-core dev machine (not asserted):
first load of 1M rows <= 60 s and <= 2 GB peak RSS.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMAGES = 8


def write_rows(folder, rows, fmt):
    for index in range(IMAGES):
        Image.new("RGB", (32, 24), (30 * index, 90, 200)).save(folder / f"img{index}.png")
    path = folder / "rows.jsonl"
    with open(path, "w") as out:
        for index in range(rows):
            image = f"img{index % IMAGES}.png"
            question, answer = f"What is shown in picture {index}?", f"a picture numbered {index}"
            if fmt == "llava":
                row = {"id": str(index), "image": image, "conversations": [
                    {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}
            else:
                row = {"messages": [
                    {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]},
                    {"role": "assistant", "content": answer}]}
            out.write(json.dumps(row) + "\n")
    return path


def load_once(path, cache):
    """Runs in a child process: load, then report seconds and this process's peak RSS."""
    os.environ["HF_DATASETS_CACHE"] = cache
    from qwen3_smvl.data.loading import load_data
    from qwen3_smvl.training.train_config import DataArguments

    start = time.perf_counter()
    loaded = load_data(DataArguments(train_data=[{"path": path}], test_size=64), seed=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # the largest parsing worker
    print(json.dumps({"rows": len(loaded.train) + len(loaded.held_out), "seconds": seconds, "peak_rss_gib": peak,
                      "worker_peak_rss_gib": worker}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("llava", "messages"), default="llava")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return load_once(*args.child)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        start = time.perf_counter()
        path = write_rows(folder, args.rows, args.format)
        size = path.stat().st_size / 2**20
        print(f"wrote {args.rows} {args.format} rows ({size:.0f} MiB) in {time.perf_counter() - start:.1f} s")
        for label in ("first load", "cached load"):
            result = subprocess.run([sys.executable, __file__, "--child", str(path), str(folder / "hf_cache")],
                                    capture_output=True, text=True, check=True)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{label}: {figures['rows']} rows in {figures['seconds']:.1f} s, "
                  f"peak RSS {figures['peak_rss_gib']:.2f} GiB (whole process, imports included), "
                  f"largest parsing worker {figures['worker_peak_rss_gib']:.2f} GiB (forked: mostly shared pages)")
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
