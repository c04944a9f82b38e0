"""Stage dpo on tiny checkpoints: preference rows in both formats, bad rows named before training, learning
on held-out pairs, the standalone checkpoint, and two DDP ranks with a text-only row on one."""

import json
import signal
import sys

import numpy as np
import pytest
import torch
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from qwen3_smvl import tiny
from qwen3_smvl.data import own_files
from qwen3_smvl.graft import stitch
from qwen3_smvl.training import preemption, run
from qwen3_smvl.training.dpo import PreferenceCollator

import test_preemption as preemption_test
import test_resume
import train
from conftest import REPO
from swanlab_log import scalars, swanlab_dir  # noqa: F401  (the fixture)
from test_recipes import STEPS, launch

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}
REFUSALS = ["I cannot tell.", "No idea.", "Maybe."]
TINY_DPO = ["--stage", "dpo", "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--dataloader_num_workers",
            "0", "--activation_checkpointing", "false", "--demo_max_new_tokens", "0", "--warmup_steps", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def small_graft(tmp_path_factory):
    """A stitched tiny graft with a small vocabulary (a cheap LM head), as the offline demo builds it."""
    root = tmp_path_factory.mktemp("small_graft")
    tiny.build_standin_tokenizer(root / "tokenizer")
    model, processor = stitch(tiny.build_tiny_smolvlm(root / "smolvlm"),
                              tiny.build_tiny_qwen(root / "qwen", root / "tokenizer"))
    model.save_pretrained(root / "graft")
    processor.save_pretrained(root / "graft")
    return root / "graft"


def preference_file(folder, rows=72, seed=0):
    """Colour questions about noisy solid-colour images: chosen the colour, rejected a non-answer."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names, lines = list(COLOURS), []
    for index in range(rows):
        colour = names[index % len(names)]
        pixels = np.clip(np.array(COLOURS[colour]) + rng.integers(-20, 21, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{index}.png")
        question = [{"type": "image", "image": f"images/{index}.png"}, {"type": "text", "text": "What colour is it?"}]
        lines.append(json.dumps({"messages": [{"role": "user", "content": question}], "chosen": colour,
                                 "rejected": REFUSALS[index % len(REFUSALS)]}))
    (folder / "pref.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "pref.jsonl"


def test_example_preference_files_read_in_both_formats(tmp_path):
    for name, fmt, rows in (("preference_llava.json", "llava", 4), ("preference_messages.jsonl", "messages", 3)):
        ds = own_files.read_file(str(REPO / "examples" / name), fmt, None, str(tmp_path / "cache"), name)
        assert len(ds) == rows and ds["problem"] == [None] * rows
        for row in ds:
            messages = json.loads(row["messages"])
            assert messages[-1]["role"] == "assistant" and messages[-2]["role"] == "user"
            assert row["rejected"] and row["rejected"] != messages[-1]["content"]
    first = json.loads(own_files.read_file(str(REPO / "examples" / "preference_llava.json"), "llava", None,
                                           str(tmp_path / "cache"), "x")[0]["messages"])
    assert first[-1]["content"] == "It is red."


def test_bad_preference_rows_are_named_with_file_and_line_before_training(tmp_path, small_graft, capsys):
    (tmp_path / "red.png").write_bytes((REPO / "examples" / "images" / "red.png").read_bytes())
    question = [{"type": "image", "image": "red.png"}, {"type": "text", "text": "Colour?"}]
    rows = [{"messages": [{"role": "user", "content": question}], "chosen": "red", "rejected": "blue"},
            {"messages": [{"role": "user", "content": question}], "chosen": "red"},
            {"messages": [{"role": "user", "content": question}], "chosen": "red", "rejected": " red"},
            {"messages": [{"role": "user", "content": [{"type": "image", "image": "gone.png"}]}],
             "chosen": "red", "rejected": "blue"},
            {"messages": [{"role": "user", "content": "Colour?"}, {"role": "assistant", "content": "red"}]}]
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = [*TINY_DPO, "--init_from", str(small_graft), "--train_data", str(data), "--test_size", "0",
            "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as refused:
        train.main(args)
    message = str(refused.value)
    for line, cause in ((2, "no rejected"), (3, "chosen equals rejected"), (4, "missing image")):
        assert f"{data}:{line}: {cause}" in message, message
    assert not (tmp_path / "out").exists()

    with pytest.raises(SystemExit) as checked:
        train.main([*args, "--check_data", "true"])
    assert checked.value.code == 1
    printed = capsys.readouterr().out
    for line, cause in ((2, "no rejected"), (3, "chosen equals rejected"), (4, "missing image"), (5, "no rejected")):
        assert f"{data}:{line}: {cause}" in printed, printed


def eval_entries(checkpoint):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "eval_logps/chosen" in entry]


def logits(model, batch):
    with torch.no_grad():
        return model.eval()(**{key: value for key, value in batch.items() if key != "completion_mask"}).logits


def test_dpo_prefers_chosen_on_held_out_pairs_and_saves_a_standalone_model(tmp_path, small_graft):
    """The default loss (sigmoid DPO plus the SFT term): on held-out pairs the chosen-minus-rejected
    log-probability margin widens, p(chosen) rises and the preference accuracy is above chance; the
    standalone model computes what the last checkpoint does."""
    data = preference_file(tmp_path / "data")
    out = tmp_path / "out"
    train.main([*TINY_DPO, "--init_from", str(small_graft), "--train_data", str(data), "--test_size", "16",
                "--max_steps", "20", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16",
                "--learning_rate", "2e-3", "--freeze_text", "false", "--eval_strategy", "steps", "--eval_steps", "20",
                "--eval_on_start", "true", "--save_strategy", "steps", "--save_steps", "20", "--output_dir", str(out)])
    start, end = eval_entries(out / "checkpoint-20")
    margin = {entry["step"]: entry["eval_logps/chosen"] - entry["eval_logps/rejected"] for entry in (start, end)}
    assert margin[20] > margin[0] + 5, (start, end)
    assert end["eval_logps/chosen"] > start["eval_logps/chosen"], (start, end)
    assert end["eval_rewards/accuracies"] > 0.5, end

    processor = AutoProcessor.from_pretrained(out)  # plain transformers
    rows = [{"messages": json.dumps([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
                                     {"role": "assistant", "content": "red"}]),
             "rejected": "No idea.", "images": [{"bytes": None, "path": str(tmp_path / "data" / "images" / "0.png")}]}]
    batch = PreferenceCollator(processor, max_length=None)(rows)
    standalone = AutoModelForImageTextToText.from_pretrained(out)
    checkpoint = AutoModelForImageTextToText.from_pretrained(out / "checkpoint-20")
    source = AutoModelForImageTextToText.from_pretrained(small_graft)
    assert torch.equal(logits(standalone, batch), logits(checkpoint, batch))
    assert not torch.allclose(logits(source, batch), logits(standalone, batch))


def test_dpo_with_lora_merges_into_a_model_that_matches_the_adapter(tmp_path, small_graft, swanlab_dir, monkeypatch):
    """Also: DPO's rewards and log-probabilities reach SwanLab (offline) at every logged step."""
    trainers, standalone_model = [], run.standalone_model
    monkeypatch.setattr(run, "standalone_model",
                        lambda trainer, *args: standalone_model(trainers.append(trainer) or trainer, *args))
    data = preference_file(tmp_path / "data", rows=12)
    out = tmp_path / "out"
    train.main([*TINY_DPO, "--init_from", str(small_graft), "--train_data", str(data), "--test_size", "0",
                "--max_steps", "3", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--lora_r", "4",
                "--save_strategy", "no", "--output_dir", str(out), "--report_to", "swanlab", "--logging_steps", "1"])
    history = [entry for entry in trainers[0].state.log_history if "rewards/margins" in entry]
    assert [entry["step"] for entry in history] == [1, 2, 3]
    board = scalars(swanlab_dir)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected", "loss"):
        assert board[f"train/{key}"] == pytest.approx({entry["step"]: entry[key] for entry in history}), key
    processor = AutoProcessor.from_pretrained(out)
    rows = [{"messages": json.dumps([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
                                     {"role": "assistant", "content": "red"}]),
             "rejected": "No idea.", "images": [{"bytes": None, "path": str(tmp_path / "data" / "images" / "0.png")}]}]
    batch = PreferenceCollator(processor, max_length=None)(rows)
    merged = AutoModelForImageTextToText.from_pretrained(out)
    adapter = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(small_graft), out / "adapter")
    expected = logits(adapter, batch)
    assert torch.allclose(logits(merged, batch), expected, atol=1e-4 * expected.abs().max().item())
    assert not torch.allclose(logits(AutoModelForImageTextToText.from_pretrained(small_graft), batch), expected, atol=1e-3)


@pytest.mark.parametrize("how", ["one process", "DDP"])
def test_shipped_dpo_recipe_with_a_text_only_row(tmp_path, small_graft, how):
    """dpo_train.yaml under both launches its comment names: `python train.py` and `accelerate launch` (two
    gloo ranks, batch 1: one rank draws the text-only pair while the other draws an image pair)."""
    data = tmp_path / "pairs.jsonl"
    image = str(REPO / "examples" / "images" / "red.png")
    rows = [{"messages": [{"role": "user", "content": [{"type": "image", "image": image},
                                                        {"type": "text", "text": "Colour?"}]}],
             "chosen": "red", "rejected": "blue"},
            {"messages": [{"role": "user", "content": "Say hello."}], "chosen": "Hello!", "rejected": "No."}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = {"init_from": small_graft, "train_data": data, "test_size": 0, "max_steps": STEPS,
                "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1, "eval_strategy": "no",
                "save_strategy": "no", "report_to": "none", "use_cpu": "true", "bf16": "false",
                "demo_max_new_tokens": 2, "output_dir": tmp_path / "out"}
    args = [item for key, value in settings.items() for item in (f"--{key}", str(value))]
    if how == "DDP":
        launch("dpo_train.yaml", "DDP", args, tmp_path)
    else:
        train.main([str(REPO / "dpo_train.yaml"), *args])
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "out").config.model_type


def test_preempted_dpo_run_saves_where_it_was_and_the_same_command_resumes_it(tmp_path, small_graft):
    """`kill -TERM` mid-run (LoRA, as dpo_train.yaml): the step finishes, a complete checkpoint is saved there,
    exit status 75; the same command resumes from it, goes on from that global step and ends with the
    merged standalone model and the adapter an uninterrupted run ends with."""
    data = preference_file(tmp_path / "data", rows=16)
    out, steps = tmp_path / "out", 6
    command = [sys.executable, str(REPO / "train.py"), *TINY_DPO, "--init_from", str(small_graft), "--train_data",
               str(data), "--test_size", "0", "--max_steps", str(steps), "--per_device_train_batch_size", "2",
               "--learning_rate", "1e-2", "--lora_r", "4", "--logging_steps", "1", "--disable_tqdm", "true",
               "--save_strategy", "steps", "--save_steps", str(steps), "--output_dir", str(out)]
    stderr = tmp_path / "stderr.txt"
    process = preemption_test.launch(command, tmp_path, stderr)
    output = preemption_test.signal_after_first_step(process, lambda running: running.send_signal(signal.SIGTERM))
    assert process.returncode == preemption.PREEMPTED_EXIT_STATUS, stderr.read_text()[-3000:]
    [(name, step, checkpoint)] = preemption_test.stops(stderr)
    assert name == "SIGTERM" and checkpoint == str(out / f"checkpoint-{step}") and step < steps
    assert preemption_test.logged_steps(output) == step
    preemption_test.assert_only_complete_checkpoint(out, step)
    assert (out / f"checkpoint-{step}" / "adapter_model.safetensors").is_file()

    process = preemption_test.launch(command, tmp_path, stderr)  # the same command again
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, stderr.read_text()[-3000:]
    assert f"resuming from {out / f'checkpoint-{step}'}" in output
    assert preemption_test.logged_steps(output) == steps - step  # it went on from the saved step
    history = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "rewards/margins" in entry] == list(range(1, steps + 1))
    assert (out / "model.safetensors").is_file() and AutoModelForImageTextToText.from_pretrained(out).config.model_type

    uninterrupted = tmp_path / "uninterrupted"
    train.main([*command[2:-1], str(uninterrupted)])  # the run no signal stopped ends with the same adapter
    adapter = f"checkpoint-{steps}/adapter_model.safetensors"
    test_resume.assert_same_weights(load_file(out / adapter), load_file(uninterrupted / adapter))
