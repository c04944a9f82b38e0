"""A tiny model learns from the frames of a video: trained with train.py on a LLaVA file of clips whose
answer is the colour of their last second (the first second shows another colour), it names that
colour on held-out clips well above chance, scored by the evaluation train.py runs; the same model,
asked the same questions about all-gray clips, scores at chance."""

import json

import datasets
import numpy as np
import yaml

from qwen3_smvl import tiny

import train

COLOURS = ("red", "green", "blue", "yellow")
QUESTION = "What colour is the last second?"
GRAY = (128, 128, 128)


def jittered(name, rng):
    return tuple(int(channel) for channel in (np.array(tiny.COLOURS[name]) + rng.integers(-20, 21, 3)).clip(0, 255))


def write_clips(folder, pairs, rng, gray=False):
    """One 2 s clip at 2 fps per (first, last) colour pair, each colour shade jittered; all gray with `gray`."""
    folder.mkdir()
    paths = []
    for index, (first, last) in enumerate(pairs):
        colours = [GRAY, GRAY] if gray else [jittered(first, rng), jittered(last, rng)]
        paths.append(str(tiny.write_colour_video(folder / f"{index:03d}.mp4", colours, fps=2)))
    return paths


def test_learns_the_colour_of_the_last_second_only_from_the_frames(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    rng = np.random.default_rng(0)
    pairs = [(first, last) for first in COLOURS for last in COLOURS if first != last]  # each answer 3 times
    train_clips = write_clips(tmp_path / "train", pairs * 4, rng)
    (tmp_path / "train.json").write_text(json.dumps([
        {"video": clip, "conversations": [{"from": "human", "value": f"<video>\n{QUESTION}"},
                                          {"from": "gpt", "value": last}]}
        for clip, (_, last) in zip(train_clips, pairs * 4)]))
    for name, gray in (("seeing", False), ("gray", True)):  # the same questions and answers, new clips
        clips = write_clips(tmp_path / name, pairs, rng, gray=gray)
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"messages": [
            {"role": "user", "content": [{"type": "video", "path": clip}, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": last}]}) + "\n" for clip, (_, last) in zip(clips, pairs)))
    config = {
        "offline_demo_dir": str(tmp_path / "demo"),  # small-vocabulary checkpoints: a cheap LM head
        "train_data": [{"path": str(tmp_path / "train.json")}],
        "eval_data": [{"path": str(tmp_path / "seeing.jsonl")}, {"path": str(tmp_path / "gray.jsonl")}],
        "video_fps": 1, "freeze_text": False, "assistant_only_loss": True, "text_eval_file": None,
        "max_steps": 60, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "warmup_steps": 0.1,
        "lr_scheduler_type": "constant_with_warmup",
        "run_evaluation": True, "eval_max_new_tokens": 7, "save_strategy": "no", "report_to": "none",
        "use_cpu": True, "seed": 0, "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    train.main([str(tmp_path / "cfg.yaml")])

    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    seeing, gray = (results["summary"][str(tmp_path / f"{name}.jsonl")] for name in ("seeing", "gray"))
    chance = 1 / len(COLOURS)  # every answer equally often; gray clips make every prompt the same
    assert seeing["n"] == gray["n"] == len(pairs) and results["skipped"] == 0
    assert seeing["accuracy"] >= 0.75 and gray["accuracy"] <= chance, results["samples"]
