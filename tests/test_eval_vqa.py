"""eval_vqa.py: answer normalisation, scoring, and the CLI on a tiny checkpoint with a synthetic the_cauldron."""

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from qwen3_smvl.data import loading
from qwen3_smvl.data.collate import BadSample
from qwen3_smvl.evaluation import vqa
from qwen3_smvl.training.train_config import DataArguments

import eval_vqa
from conftest import REPO


@pytest.mark.parametrize("answer, normalised", [
    ("Yes", "yes"),
    ("YES!", "yes"),
    ("red.", "red"),
    ("(blue)", "blue"),
    ("black-and-white", "black and white"),
    ("The dog", "dog"),
    ("a cat on an apple", "cat on apple"),
    ("theatre", "theatre"),  # articles only as whole words
    ("A", "a"),  # an option letter
    ("Answer: A", "answer a"),
    ("two", "2"),
    ("Twenty-one", "21"),
    ("ninety nine", "99"),
    ("none", "0"),
    ("someone", "someone"),  # number words only as whole words
    ("1,000", "1000"),
    ("1,000,000", "1000000"),
    ("1, 2", "1 2"),  # a list, not a thousands separator
    ("3.5", "3.5"),
    ("3.5.", "3.5"),
    ("  blue \t and\nwhite ", "blue and white"),
    ("Two dogs.", "2 dogs"),
    ("don't", "do not"),
    ("dont", "do not"),
    ("isn\u2019t", "is not"),
    ("can't", "can not"),
    ("they're", "they are"),
    ("狗。", "狗"),
])
def test_normalise(answer, normalised):
    assert vqa.normalise(answer) == normalised


@pytest.mark.parametrize("prediction, reference, exact, contains", [
    ("Two dogs.", "2 dogs", True, True),
    ("Red", "red", True, True),
    ("The picture is red.", "red", False, True),
    ("There are two dogs.", "2", False, True),
    ("12", "2", False, False),  # contains matches whole words
    ("The answer is A.", "A", False, True),
    ("", "A", False, False),
    ("blue", "red", False, False),
])
def test_score(prediction, reference, exact, contains):
    assert vqa.score(prediction, reference) == (exact, contains)


def test_accuracy_contains_and_loss_on_hand_made_predictions(monkeypatch):
    rows = [{"images": [], "source": s, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a, s in [
        ("q1", "red", "cocoqa"), ("q2", "two", "cocoqa"), ("q3", "blue", "cocoqa"), ("q4", "A", "ai2d"), ("bad", "x", "ai2d"),
    ]]
    replies = {"q1": "<think>\nReddish.\n</think>\n\nRed.", "q2": "I see 2.", "q3": "green", "q4": "a"}
    losses = {"q1": (2.0, 1), "q2": (3.0, 2), "q3": (1.0, 1), "q4": (4.0, 4)}  # (summed loss, supervised tokens)

    def loss_of_row(model, collator, row):
        question = row["messages"][0]["content"]
        if question == "bad":
            raise BadSample("unusable", reason="bad image")
        return losses[question]

    monkeypatch.setattr(vqa, "loss_of_row", loss_of_row)
    monkeypatch.setattr(vqa.inference, "reply_to", lambda model, processor, messages, images, **_: replies[messages[-1]["content"]])
    results = vqa.evaluate(torch.nn.Identity(), None, rows, collator=None)

    summary = results["summary"]
    assert list(summary) == ["cocoqa", "ai2d", "overall"]
    assert summary["cocoqa"] == pytest.approx({"n": 3, "accuracy": 1 / 3, "contains": 2 / 3, "eval_loss": 6 / 4})
    assert summary["ai2d"] == pytest.approx({"n": 1, "accuracy": 1.0, "contains": 1.0, "eval_loss": 1.0})
    assert summary["overall"] == pytest.approx({"n": 4, "accuracy": 0.5, "contains": 0.75, "eval_loss": 10 / 8})
    assert results["skipped"] == 1 and "unusable" in results["samples"][-1]["skipped"]
    assert [record.get("correct") for record in results["samples"]] == [True, False, False, True, None]
    assert "overall" in vqa.format_table(summary)


def test_row_loss_is_the_models_mean_over_supervised_tokens(stitched):
    model, processor = stitched
    row = {"images": [], "messages": [{"role": "user", "content": "Colour?"}, {"role": "assistant", "content": "red"}]}
    collator = vqa.Collator(processor, padding="max_length", max_length=64, assistant_only_loss=True)
    loss_sum, tokens = vqa.loss_of_row(model, collator, row)
    with torch.no_grad():
        expected = model(**collator([row])).loss
    assert tokens == len(processor.tokenizer.encode("red", add_special_tokens=False)) + 1  # the answer and <|im_end|>
    assert loss_sum / tokens == pytest.approx(expected.item(), rel=1e-5)


@pytest.fixture
def config_path(tmp_path, cauldron_dir):
    config = {"data_dir": str(cauldron_dir), "train_data": ["cocoqa", "ai2d"], "test_size": 4, "seed": 0,
              "report_to": "none", "use_cpu": True}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def model_dir(tmp_path, stitched_dir):
    """A copy, so that eval_results.json does not land in the session's shared checkpoint."""
    return shutil.copytree(stitched_dir, tmp_path / "model")


def test_cli_evaluates_the_held_out_rows(config_path, model_dir, cauldron_dir):
    result = subprocess.run(
        [sys.executable, str(REPO / "eval_vqa.py"), str(config_path), "--model", str(model_dir), "--max-new-tokens", "4"],
        capture_output=True, text=True, cwd=model_dir.parent, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = [line for line in result.stdout.splitlines() if line.split()[:1] in (["subset"], ["cocoqa"], ["ai2d"], ["overall"])]
    assert header.split() == ["subset", "n", "accuracy", "contains", "eval", "loss"]
    assert rows[-1].split()[:2] == ["overall", "4"]

    saved = json.loads((model_dir / "eval_results.json").read_text())
    overall = saved["summary"]["overall"]
    assert overall["n"] == 4 and math.isfinite(overall["eval_loss"]) and 0 <= overall["accuracy"] <= 1
    held_out = loading.load_data(DataArguments(data_dir=str(cauldron_dir), train_data=["cocoqa", "ai2d"], test_size=4), 0).held_out
    turns = [json.loads(row["messages"]) for row in held_out]
    assert [s["question"] for s in saved["samples"]] == [user["content"][-1]["text"] for user, _ in turns]
    assert [s["reference"] for s in saved["samples"]] == [answer["content"] for _, answer in turns]
    assert all(isinstance(s["prediction"], str) and isinstance(s["correct"], bool) for s in saved["samples"])
    assert saved["max_new_tokens"] == 4 and saved["think"] is False and saved["data_seed"] == 0

    # The summary line repeats the saved figures and says where they are, then what to run next.
    summary = next(line for line in result.stdout.splitlines() if line.startswith("eval: "))
    assert summary.startswith(f"eval: accuracy {overall['accuracy']:.1%} (contains {overall['contains']:.1%}), "
                              f"eval loss {overall['eval_loss']:.4f} on 4 rows, text-only loss "
                              f"{saved['text_only']['loss']:.4f}, ")
    assert summary.endswith(f" s -> {model_dir / 'eval_results.json'}")
    assert f"python infer.py --model {model_dir}" in result.stdout.split(summary, 1)[1]


def test_samples_and_overrides(config_path, model_dir, capsys):
    eval_vqa.main([str(config_path), "--model", str(model_dir), "--samples", "2", "--max-new-tokens", "2", "--think",
                   "--train_data", "cocoqa"])
    saved = json.loads((model_dir / "eval_results.json").read_text())
    assert saved["summary"]["overall"]["n"] == 2 and saved["train_data"] == ["cocoqa"] and saved["think"] is True
    assert {s["source"] for s in saved["samples"]} == {"cocoqa"}
    assert "eval_results.json" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--model", "/nonexistent/model"], "--model /nonexistent/model is not a model directory"),
    (["--model", "MODEL", "--samples", "0"], "--samples and --max-new-tokens must be positive"),
    (["--model", "MODEL", "--lerning_rate", "1"], "unknown key 'lerning_rate'"),
    (["--model", "MODEL", "--test_size", "0"], "test_size is 0"),
    (["--model", "MODEL", "--data_dir", "/nonexistent/the_cauldron"], "download_resource.sh"),
    (["--model", "MODEL", "--text_eval_file", "/nonexistent/text.jsonl"], "text_eval_file /nonexistent/text.jsonl cannot be read"),
    (["--model", "MODEL", "--text_eval_file", "BAD_TEXT"], 'bad.jsonl line 2: expected {"user": "...", "assistant": "..."}'),
])
def test_refusals_are_one_line(config_path, model_dir, flags, message, tmp_path):
    bad_text = tmp_path / "bad.jsonl"
    bad_text.write_text('{"user": "Hi", "assistant": "Hello."}\n{"question": "Hi"}\n')
    flags = [{"MODEL": str(model_dir), "BAD_TEXT": str(bad_text)}.get(flag, flag) for flag in flags]
    with pytest.raises(SystemExit) as stop:
        eval_vqa.main([str(config_path), *flags])
    assert str(stop.value).startswith("eval_vqa.py: ") and message in str(stop.value)
    assert not (model_dir / "eval_results.json").exists()


def test_missing_config_file_is_refused(model_dir, tmp_path):
    with pytest.raises(SystemExit, match="config file .*missing.yaml not found"):
        eval_vqa.main([str(tmp_path / "missing.yaml"), "--model", str(model_dir)])


def test_text_only_loss_follows_the_text_model_alone(config_path, model_dir, tmp_path):
    """The forgetting check: the text-only loss moves when the text model changes, not the vision tower."""
    from transformers import AutoModelForImageTextToText

    text_file = tmp_path / "text.jsonl"
    text_file.write_text('{"user": "Capital of France?", "assistant": "Paris."}\n\n'
                         '{"user": "中国的首都是哪里？", "assistant": "北京。"}\n')

    def text_only_loss(directory):
        eval_vqa.main([str(config_path), "--model", str(directory), "--samples", "1", "--max-new-tokens", "1",
                       "--text_eval_file", str(text_file)])
        saved = json.loads((directory / "eval_results.json").read_text())
        assert saved["text_only"]["n"] == 2 and saved["text_eval_file"] == str(text_file)
        return saved["text_only"]["loss"]

    def perturbed_copy(name, part):
        model = AutoModelForImageTextToText.from_pretrained(model_dir)
        with torch.no_grad():
            for parameter in getattr(model.model, part).parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        model.save_pretrained(tmp_path / name)
        for extra in model_dir.iterdir():
            if extra.name not in {"model.safetensors", "config.json", "eval_results.json"}:
                shutil.copy(extra, tmp_path / name)
        return tmp_path / name

    original = text_only_loss(model_dir)
    assert math.isfinite(original) and original > 0
    assert text_only_loss(perturbed_copy("vision_changed", "vision_model")) == original
    assert text_only_loss(perturbed_copy("text_changed", "text_model")) != pytest.approx(original, rel=1e-3)
