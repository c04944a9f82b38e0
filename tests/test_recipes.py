"""Every shipped recipe as written, with only paths, sizes and the device overridden on the command line
(as users do), runs a few steps on tiny checkpoints under each launch its comments and docs name: one
process, two DDP ranks (`accelerate_configs/ddp.yaml`, gloo on CPU) and FSDP2 (`accelerate_configs/fsdp2.yaml`, through
tests/fsdp_on_cpu.py). The data mix puts an image row, a text-only row and a video row side by side,
so that with batch 1 one rank draws a text-only row while the other draws an image or a video. Each
launch is bounded: a hang fails the test, naming the recipe and the launch. Stage 2 starts from the
stage-1 recipe's two-rank output, made once for the module."""

import json
import os
import sys

import datasets
import pytest
import torch
from transformers import AutoModelForImageTextToText

from qwen3_smvl import tiny

import train
from conftest import REPO, free_port, launch_bounded

STEPS = 2


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """{train_data, eval_data} files: an image row, a text-only row and a video row to train on, and
    an image row and a text-only row held out."""
    root = tmp_path_factory.mktemp("mix")
    tiny.write_colour_video(root / "rgb.mp4", [(220, 20, 20), (20, 160, 20), (20, 40, 220)], fps=8)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQ"
                                                      "kWg2AAAAGUlEQVR4nGP8cEeEgRTARJLqUQ2jGoaUBgDvdwIAP1C6tAAAAABJRU5ErkJggg=="}}

    def row(parts, answer):
        return json.dumps({"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": answer}]})

    image_row = row([image, {"type": "text", "text": "What colour is the picture?"}], "yellow")
    text_row = row([{"type": "text", "text": "Say hello."}], "Hello!")
    video_row = row([{"type": "video", "path": str(root / "rgb.mp4")}, {"type": "text", "text": "Last colour?"}], "blue")
    (root / "train.jsonl").write_text("\n".join([image_row, text_row, video_row]) + "\n")
    (root / "eval.jsonl").write_text("\n".join([image_row, text_row]) + "\n")
    return root


def overrides(mix, tmp_path, output_dir, **more):
    """The command-line overrides of every launch: data and output paths, sizes, the CPU."""
    settings = {"train_data": f"{{path: {mix / 'train.jsonl'}}}", "eval_data": f"{{path: {mix / 'eval.jsonl'}}}",
                "image_cache_dir": str(tmp_path / "image_cache"), "output_dir": str(output_dir),
                "max_steps": STEPS, "dataloader_num_workers": 0, "demo_max_new_tokens": 2, "eval_max_new_tokens": 2,
                "use_cpu": "true", "report_to": "none", **more}
    return [item for key, value in settings.items() for item in (f"--{key}", str(value))]


def launch(recipe, how, args, cwd):
    """`accelerate launch` of train.py with the shipped accelerate config `how` names, on two CPU ranks;
    returns stdout; bounded by conftest.launch_bounded."""
    config, script = {"DDP": ("ddp.yaml", REPO / "train.py"),
                      "FSDP2": ("fsdp2.yaml", REPO / "tests" / "fsdp_on_cpu.py")}[how]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "accelerate_configs" / config),
               "--num_processes", "2", "--main_process_port", str(free_port()), str(script), str(REPO / recipe), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(cwd / "hf_cache")}
    stdout, _ = launch_bounded(command, f"{recipe} under {how} on two CPU ranks", cwd, env)
    for rank in (0, 1):
        assert f"rank {rank}/2: {STEPS} steps" in stdout, f"{recipe} under {how}: rank {rank} did not finish\n{stdout}"
    return stdout


def one_process(recipe, args, cwd, monkeypatch):
    """`python train.py recipe ...`, in this process."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cwd / "hf_cache"))
    train.main([str(REPO / recipe), *args])


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, mix, tiny_smolvlm_dir, tiny_qwen_dir):
    """full_train.yaml as its comment launches it (`accelerate launch`: DDP, here two ranks): stage 2's start."""
    cwd = tmp_path_factory.mktemp("stage1")
    out = cwd / "freeze_llm_vlm_fulldata"
    launch("full_train.yaml", "DDP", [*overrides(mix, cwd, out), "--smolvlm_path", str(tiny_smolvlm_dir),
                                      "--qwen_path", str(tiny_qwen_dir)], cwd)
    return out


def weights(model_dir, part):
    return AutoModelForImageTextToText.from_pretrained(model_dir).model.get_submodule(part).state_dict()


def changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


def test_stage1_recipe_on_two_ranks_trains_the_connector_alone(stage1, tiny_smolvlm_dir, tiny_qwen_dir):
    from qwen3_smvl.graft import stitch

    fresh, _ = stitch(tiny_smolvlm_dir, tiny_qwen_dir)
    fresh.to(torch.bfloat16).float()  # the recipe trains in bf16: frozen parts are the sources rounded to it
    trained = AutoModelForImageTextToText.from_pretrained(stage1)
    for part in ("vision_model", "text_model"):
        assert not changed(fresh.model.get_submodule(part).state_dict(), trained.model.get_submodule(part).state_dict())
    assert changed(fresh.model.connector.state_dict(), trained.model.connector.state_dict())


@pytest.mark.parametrize("how", ["DDP", "FSDP2"])
def test_stage2_full_on_two_ranks_with_text_only_rows(tmp_path, mix, stage1, how):
    """The shipped hang: activation checkpointing, every part trained, a text-only row on one rank."""
    out = tmp_path / "stage2"
    launch("stage2_full.yaml", how, [*overrides(mix, tmp_path, out), "--init_from", str(stage1)], tmp_path)
    for part in ("vision_model", "connector", "text_model"):  # every part trains, at its own rate
        assert changed(weights(stage1, part), weights(out, part)), part
    assert (out / "eval_results.json").is_file()


def test_stage2_lora_on_two_ranks_with_text_only_rows(tmp_path, mix, stage1):
    out = tmp_path / "stage2"
    launch("stage2_lora.yaml", "DDP", [*overrides(mix, tmp_path, out), "--init_from", str(stage1)], tmp_path)
    assert not changed(weights(stage1, "vision_model"), weights(out, "vision_model"))
    assert changed(weights(stage1, "connector"), weights(out, "connector"))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("recipe", ["stage2_full.yaml", "stage2_lora.yaml"])
def test_stage2_recipes_in_one_process(tmp_path, mix, stage1, recipe, monkeypatch, capsys):
    one_process(recipe, [*overrides(mix, tmp_path, tmp_path / "stage2"), "--init_from", str(stage1)], tmp_path,
                monkeypatch)
    assert f"rank 0/1: {STEPS} steps" in capsys.readouterr().out


def test_cocoqa_recipe_in_one_process_and_on_two_ranks(tmp_path, mix, tiny_smolvlm_dir, tiny_qwen_dir, monkeypatch,
                                                       capsys):
    """cocoqa_train.yaml's comment names both `python train.py` and `accelerate launch`."""
    sources = ["--smolvlm_path", str(tiny_smolvlm_dir), "--qwen_path", str(tiny_qwen_dir)]
    one_process("cocoqa_train.yaml", [*overrides(mix, tmp_path, tmp_path / "one"), *sources], tmp_path, monkeypatch)
    assert f"rank 0/1: {STEPS} steps" in capsys.readouterr().out
    launch("cocoqa_train.yaml", "DDP", [*overrides(mix, tmp_path, tmp_path / "ddp"), *sources], tmp_path)


def test_mixture_demo_recipe_in_one_process(tmp_path, monkeypatch, capsys):
    """examples/mixture_demo.yaml as its comment runs it, from the repository root (its data paths are
    relative to it), with its own offline tiny checkpoints and data; only the output and size change."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    train.main([str(REPO / "examples" / "mixture_demo.yaml"), "--offline_demo_dir", str(tmp_path / "offline_demo"),
                "--output_dir", str(tmp_path / "run"), "--max_steps", str(STEPS),
                "--image_cache_dir", str(tmp_path / "image_cache")])
    assert f"rank 0/1: {STEPS} steps" in capsys.readouterr().out


@pytest.mark.parametrize("recipe", ["full_train.yaml", "cocoqa_train.yaml", "stage2_full.yaml", "stage2_lora.yaml",
                                    "grpo_train.yaml", "dpo_train.yaml"])
def test_data_check_of_every_gpu_recipe_runs_on_a_machine_without_a_gpu(recipe, tmp_path, monkeypatch, capsys,
                                                                          stitched_dir, tiny_smolvlm_dir, tiny_qwen_dir):
    """`python train.py RECIPE --check_data true` on a login node: the recipes ask for bf16 on a GPU, but the
    check loads no model, so their precision keys must not refuse it. Only model and data paths change:
    the_cauldron's subsets come from a synthetic copy (mixes become its two subsets), DPO's pairs from examples/."""
    tiny.write_synthetic_cauldron(tmp_path / "cauldron", subsets=("clevr", "cocoqa"), rows_per_subset=4)
    args = ["--check_data", "true", "--data_dir", str(tmp_path / "cauldron")]
    if recipe in ("full_train.yaml", "cocoqa_train.yaml"):
        args += ["--smolvlm_path", str(tiny_smolvlm_dir), "--qwen_path", str(tiny_qwen_dir)]
    else:
        args += ["--init_from", str(stitched_dir)]
    if recipe == "dpo_train.yaml":
        args += ["--train_data", f"{{path: {REPO / 'examples' / 'preference_messages.jsonl'}}}", "--max_images", "2"]
    elif recipe != "cocoqa_train.yaml":  # all of the_cauldron, or mixes of subsets and downloaded files
        args += ["--train_data", "[clevr, cocoqa]"]
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(SystemExit) as stop:
        train.main([str(REPO / recipe), *args])
    assert stop.value.code == 0, capsys.readouterr().out
    assert ", 0 problem(s) found" in capsys.readouterr().out
