"""Peak memory and seconds per answer of the deployment routes on the real-shaped model (random weights;
a benchmark, not a test).

    python throughput/measure_deploy.py [--routes fp32,8bit,4bit,gguf] [--new-tokens 16] [--ctx 1024] [--llama-threads N]

Builds once, under .cache/real_shaped_random, the grafted model from the real configs
(../shared/assets, or the downloaded checkpoints' configs) with random weights, saved in bf16 as
stitch.py saves the real graft. Each route then answers one question about the dog photo in its
own subprocess, which reports its peak RSS: transformers fp32 (infer.py on a CPU), `--quantize 8bit`
and `4bit`, and llama.cpp (`export_gguf.py --quant Q4_K_M` + `llama-mtmd-cli`, when
`get_llama_cpp.sh --build` has been run) with a --ctx token context. A random model never stops on
its own, so every route generates exactly --new-tokens tokens.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import GenerationConfig, SmolVLMForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft, inference  # noqa: E402

import export_gguf  # noqa: E402

ASSETS = REPO.parent / "shared" / "assets"
MODEL_DIR = REPO / ".cache" / "real_shaped_random"
QUESTION = "How many dogs are in the picture?"


def default_source(asset, download):
    return str(ASSETS / asset) if (ASSETS / asset / "config.json").is_file() else download


def photo_path(scratch):
    path = ASSETS / "images" / "dog.png"
    if path.is_file():
        return path
    path = scratch / "random_photo.png"  # the dog photo's size: 12 tiles + the global view
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (584, 1076, 3), dtype=np.uint8)).save(path)
    return path


def build_real_shaped(smolvlm_path, qwen_path, out_dir):
    """stitch.py's graft from configs alone, random weights, saved in bf16 with the real processor."""
    smol_config, qwen_config = graft.load_source_configs(smolvlm_path, qwen_path)
    tokenizer = graft.load_tokenizer(qwen_path)
    config = graft.build_config(smol_config, qwen_config, tokenizer)
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig.from_pretrained(qwen_path)
    processor = graft.build_processor(smolvlm_path, tokenizer, config)
    graft.verify_graft(model, processor)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def peak_rss_mib(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def transformers_worker(model_dir, route, image_path, new_tokens):
    """One answer with infer.py's functions; prints a JSON line of figures."""
    start = time.perf_counter()
    model, processor = inference.load_model(model_dir, device="cpu", quantize=None if route == "fp32" else route)
    loaded = time.perf_counter()
    prompt = inference.render_prompt(processor, inference.build_messages(QUESTION))
    inputs = processor(text=[prompt], images=[[inference.load_image(image_path)]], return_tensors="pt")
    model.generation_config.eos_token_id = None  # exactly new_tokens tokens
    with torch.no_grad():
        model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens)
    print(json.dumps({
        "route": f"transformers {route}", "weights_mib": model.get_memory_footprint() / 2**20,
        "files_mib": None, "prompt_tokens": inputs["input_ids"].shape[1], "load_s": loaded - start,
        "answer_s": time.perf_counter() - loaded, "peak_rss_mib": peak_rss_mib(),
    }))


def gguf_files(model_dir, scratch):
    """(text Q4_K_M, mmproj Q8_0) exported once next to the model."""
    out = scratch / "gguf"
    if not (out / "text-Q4_K_M.gguf").is_file():
        export_gguf.export(model_dir, out, quant="Q4_K_M")
    return out / "text-Q4_K_M.gguf", out / "mmproj-Q8_0.gguf"


def gguf_worker(model_dir, image_path, new_tokens, ctx, threads):
    """One answer with llama-mtmd-cli, run from this process so that RUSAGE_CHILDREN is its peak alone."""
    cli = export_gguf.llama_cpp_tools(None, "Q4_K_M")[1].with_name("llama-mtmd-cli")
    text, mmproj = gguf_files(model_dir, Path(model_dir).parent / "bench_deploy")
    command = [cli, "-m", text, "--mmproj", mmproj, "--image", image_path, "-p", QUESTION, "-n", new_tokens,
               "-c", ctx, "--temp", "0", "--ignore-eos", "-t", threads]
    start = time.perf_counter()
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"llama-mtmd-cli failed:\n{result.stderr[-3000:]}")
    print(json.dumps({
        "route": f"llama.cpp Q4_K_M + mmproj Q8_0, ctx {ctx}, {threads} threads", "weights_mib": None,
        "files_mib": (text.stat().st_size + mmproj.stat().st_size) / 2**20, "prompt_tokens": None,
        "load_s": None, "answer_s": time.perf_counter() - start,  # load + image encode + answer
        "peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),
    }))


def run_worker(args, route, image_path):
    command = [sys.executable, __file__, "--worker", route, "--model-dir", args.model_dir,
               "--image", image_path, "--new-tokens", args.new_tokens, "--ctx", args.ctx,
               "--llama-threads", args.llama_threads]
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"route {route} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_table(rows, args):
    cell = lambda value, fmt: "—" if value is None else format(value, fmt)
    print(f"CPU, torch threads {torch.get_num_threads()}; {args.new_tokens} new tokens; image {args.image_desc}")
    print("| route | weights in RAM MiB | files MiB | prompt tokens | load s | answer s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['route']} | {cell(row['weights_mib'], '.0f')} | {cell(row['files_mib'], '.0f')} | "
              f"{cell(row['prompt_tokens'], 'd')} | {cell(row['load_s'], '.1f')} | {cell(row['answer_s'], '.1f')} | "
              f"{cell(row['peak_rss_mib'], '.0f')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=default_source("smolvlm2-256m-video-instruct", graft.DEFAULT_SMOLVLM))
    parser.add_argument("--qwen", default=default_source("qwen3-0.6b", graft.DEFAULT_QWEN))
    parser.add_argument("--model-dir", default=str(MODEL_DIR))
    parser.add_argument("--routes", default="fp32,8bit,4bit,gguf")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--ctx", type=int, default=1024, help="llama.cpp context size")
    parser.add_argument("--llama-threads", type=int, default=torch.get_num_threads(),
                        help="llama.cpp threads (on a machine shared with other jobs, 1 can be faster)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "gguf":
        gguf_worker(args.model_dir, args.image, args.new_tokens, args.ctx, args.llama_threads)
        return
    if args.worker:
        transformers_worker(args.model_dir, args.worker, args.image, args.new_tokens)
        return
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        build_real_shaped(args.smolvlm, args.qwen, model_dir)
    scratch = model_dir.parent / "bench_deploy"
    scratch.mkdir(parents=True, exist_ok=True)
    image_path = photo_path(scratch)
    with Image.open(image_path) as image:
        args.image_desc = f"{image_path.name} {image.width}x{image.height}"
    rows = []
    for route in args.routes.split(","):
        if route == "gguf":
            gguf_files(model_dir, scratch)  # the export's own memory is not the route's
        rows.append(run_worker(args, route, image_path))
        print(rows[-1], flush=True)
    print_table(rows, args)


if __name__ == "__main__":
    main()
