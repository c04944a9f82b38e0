"""A newcomer's first hour: the README's demo command, then infer.py and eval_vqa.py on its output."""

import itertools
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForImageTextToText, AutoProcessor

from conftest import REPO


def python(*args, cwd, env=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`python train.py demo_train.yaml`, reporting to SwanLab offline (no account needed)."""
    cwd = tmp_path_factory.mktemp("newcomer")
    env = {**os.environ, "SWANLAB_MODE": "offline", "SWANLAB_LOG_DIR": str(cwd / "swanlog")}
    result = python(REPO / "train.py", REPO / "demo_train.yaml", "--report_to", "swanlab", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, result.stdout, result.stderr


def test_demo_trains_and_answers(demo_run):
    cwd, printed, warned = demo_run
    # A first run says what it built, what data it trains on, where the model went and what to run next.
    assert "offline demo: tiny random checkpoints and 256 synthetic rows, built once -> .cache/offline_demo\n" in printed
    assert re.search(r"^data: 240 train rows \(cocoqa 240\), 16 held out, 0 skipped, \d+ s$", printed, re.MULTILINE)
    assert "saved the trained model to ./model/demo_run; next:\n  python infer.py --model ./model/demo_run" in printed
    assert "trainable params:" in printed
    # bitsandbytes (a deploy extra) is imported by transformers in every run; its missing-kernel warning is not for training.
    assert "kernels-community" not in warned
    assert "demo prompt:" in printed and "What colour is the picture?" in printed
    answer = printed.split("demo answer:", 1)[1]
    assert answer.strip()
    model = AutoModelForImageTextToText.from_pretrained(cwd / "model" / "demo_run")
    processor = AutoProcessor.from_pretrained(cwd / "model" / "demo_run")
    batch = processor(text=["<|im_start|>user\nhi<|im_end|>\n"], return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()
    # a model card the Hub reads as written, saying what the demo model is
    card = ModelCard.load(cwd / "model" / "demo_run" / "README.md")
    assert card.data.base_model == ["HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "Qwen/Qwen3-0.6B"]
    assert "offline-demo" in card.data.tags and not card.data.datasets  # synthetic data, no hub dataset
    assert "not a usable model" in card.text and "| cocoqa | synthetic | 240 | 100.0% |" in card.text


def test_demo_logs_image_answer_and_context_to_swanlab(demo_run):
    cwd, _, _ = demo_run
    runs = list((cwd / "swanlog").glob("run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("media/image/*.png"))
    texts = [path.read_text() for path in runs[0].glob("media/text/*")]
    assert any("What colour is the picture?" in text for text in texts)
    assert list(runs[0].glob("media/echarts/*.json"))


def test_infer_and_evaluate_run_on_the_demo_output(demo_run, tmp_path):
    cwd, _, _ = demo_run
    model_dir = cwd / "model" / "demo_run"
    image = tmp_path / "red.png"
    from PIL import Image

    Image.new("RGB", (64, 48), "red").save(image)
    asked = python(REPO / "infer.py", "--model", model_dir, "--image", image, "--question", "What colour is the picture?",
                   "--max-new-tokens", "8", cwd=cwd)
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert asked.stdout.strip()

    scored = python(REPO / "eval_vqa.py", REPO / "demo_train.yaml", "--model", model_dir, "--max-new-tokens", "8", cwd=cwd)
    assert scored.returncode == 0, scored.stderr[-2000:]
    overall = json.loads((model_dir / "eval_results.json").read_text())["summary"]["overall"]
    # The demo learns colours: held-out accuracy far above the 1-in-6 chance of a blind guess.
    assert overall["n"] == 16 and overall["accuracy"] >= 0.5, overall
    assert f"eval: accuracy {overall['accuracy']:.1%} (contains {overall['contains']:.1%}), " in scored.stdout
    assert f" s -> {model_dir / 'eval_results.json'}\nnext:\n" in scored.stdout


def makefile_recipe(target):
    """The command lines of a Makefile target, as lists of arguments ($(PYTHON) left as the first)."""
    lines = (REPO / "Makefile").read_text().split(f"\n{target}:", 1)[1].split("\n")[1:]
    return [line.split() for line in itertools.takewhile(lambda line: line.startswith("\t"), lines)]


def logged(key, printed):
    return [float(value) for value in re.findall(rf"'{re.escape(key)}': '([0-9.]+)'", printed)]


def test_make_demo_grpo_raises_the_correctness_reward(tmp_path):
    """`make demo-grpo`'s commands as its Makefile writes them, from a fresh folder: the partly trained colour
    graft's correctness reward rises during GRPO, and on the held-out questions from step 0 to the last."""
    printed = ""
    for python_, script, *args in makefile_recipe("demo-grpo"):
        assert python_ == "$(PYTHON)"
        args = [REPO / arg if arg.endswith(".yaml") else arg for arg in args]
        result = python(REPO / script, *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        printed = result.stdout
    training, held_out = logged("rewards/correctness/mean", printed), logged("eval_rewards/correctness/mean", printed)
    assert len(training) == 8 and len(held_out) == 3, printed[-3000:]
    assert training[-1] > training[0] + 0.1 and held_out[-1] > held_out[0] + 0.1, (training, held_out)
    assert "saved the trained model to ./model/demo_grpo" in printed
