"""Non-finite steps: a planted NaN batch is skipped without touching the weights or the optimizer,
counted and named by its rows; K such steps in a row stop the run with a checkpoint and an error
naming the rows; under stage sft, dpo and grpo alike. The fault is planted by tests only
(tests/faults.py): batches get NaN pixels."""

import json
import logging
import re

import pytest
import torch
from safetensors.torch import load_file

import train
from conftest import REPO
from faults import plant_nan_batches, plant_nan_generations
from qwen3_smvl.training import dpo
from test_dpo import TINY_DPO, preference_file, small_graft  # noqa: F401  (the `small_graft` fixture)
from test_grpo import grpo_config
from test_train import config, run  # noqa: F401  (the `config` fixture)


@pytest.fixture
def nan_batches():
    """Training batches whose numbers (1-based, in collation order) are added to `numbers` get NaN
    pixel values; `origins` records the rows of each such batch."""
    planted = {"numbers": set(), "origins": {}}
    undo = plant_nan_batches(planted["numbers"], planted["origins"])
    yield planted
    undo()


def trained(checkpoint, part=".connector."):
    weights = load_file(checkpoint / "model.safetensors")
    return {name: tensor for name, tensor in weights.items() if part in name}


def optimizer_state(checkpoint):
    return torch.load(checkpoint / "optimizer.pt", weights_only=False)["state"]


def assert_equal(before, after):
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], dict):
            assert_equal(before[key], after[key])
        else:
            assert torch.equal(before[key], after[key]), key


def test_nan_batches_are_skipped_named_and_stop_the_run_when_in_a_row(tmp_path, config, nan_batches, caplog):
    nan_batches["numbers"].update({3, 5, 6})
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="qwen3_smvl.training.step_guard"), pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, "max_steps": 8, "save_strategy": "steps", "save_steps": 1, "max_nonfinite_steps": 2})

    warnings = [record.getMessage() for record in caplog.records if record.name == "qwen3_smvl.training.step_guard"]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("step 3: non-finite loss and gradient norm: skipped without updating the weights "
                                  "(1 in a row, 1 in this run); rows: ")
    assert warnings[0].endswith(", ".join(nan_batches["origins"][3]))
    assert "(2 in a row, 3 in this run)" in warnings[2]

    # step 3 changed nothing, step 4 trained on, steps 5 and 6 stopped the run with a checkpoint at 6
    assert_equal(trained(out / "checkpoint-2"), trained(out / "checkpoint-3"))
    assert_equal(optimizer_state(out / "checkpoint-2"), optimizer_state(out / "checkpoint-3"))
    assert not torch.equal(*(trained(out / name)[key] for name in ("checkpoint-3", "checkpoint-4")
                             for key in ["model.connector.modality_projection.proj.weight"]))
    assert_equal(trained(out / "checkpoint-4"), trained(out / "checkpoint-6"))
    assert all(tensor.isfinite().all() for tensor in trained(out / "checkpoint-6").values())
    assert not (out / "checkpoint-7").exists() and not (out / "model.safetensors").exists()

    message = str(stop.value)
    assert message.startswith("train.py: steps 5-6: 2 steps in a row had a non-finite loss or gradient norm "
                              "(max_nonfinite_steps: 2), none updated the weights; their rows: ")
    assert message.endswith(f"{out / 'checkpoint-6'} holds the weights from before them")
    assert all(origin in message for number in (5, 6) for origin in nan_batches["origins"][number])
    assert "\n" not in message


def changed(before, after):
    return any(not torch.equal(tensor, after[name]) for name, tensor in before.items())


def guard_warnings(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "qwen3_smvl.training.step_guard"]


def test_dpo_nan_batches_are_skipped_named_and_stop_the_run_when_in_a_row(tmp_path, small_graft, caplog):
    """Stage dpo: NaN pixels in the preference collator's batches 2, 4 and 5 (max_nonfinite_steps: 2)."""
    planted = {2: None, 4: None, 5: None}
    undo = plant_nan_batches(set(planted), planted, collator=dpo.PreferenceCollator)
    data = preference_file(tmp_path / "data", rows=12)
    out = tmp_path / "out"
    args = [*TINY_DPO, "--init_from", str(small_graft), "--train_data", str(data), "--test_size", "0",
            "--max_steps", "6", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--freeze_text",
            "false", "--save_strategy", "steps", "--save_steps", "1", "--max_nonfinite_steps", "2",
            "--output_dir", str(out)]
    try:
        with caplog.at_level(logging.WARNING, logger="qwen3_smvl.training.step_guard"), \
                pytest.raises(SystemExit) as stop:
            train.main(args)
    finally:
        undo()

    warnings = guard_warnings(caplog)
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("step 2: non-finite loss and gradient norm: skipped without updating the weights "
                                  "(1 in a row, 1 in this run); rows: ")
    assert warnings[0].endswith(", ".join(planted[2])) and all(re.fullmatch(rf"{data}:\d+", row) for row in planted[2])
    assert "(2 in a row, 3 in this run)" in warnings[2]

    # step 2 changed nothing, step 3 trained on, steps 4 and 5 stopped the run with a checkpoint at 5
    assert_equal(trained(out / "checkpoint-1", "model."), trained(out / "checkpoint-2", "model."))
    assert_equal(optimizer_state(out / "checkpoint-1"), optimizer_state(out / "checkpoint-2"))
    assert changed(trained(out / "checkpoint-2", "model."), trained(out / "checkpoint-3", "model."))
    assert_equal(trained(out / "checkpoint-3", "model."), trained(out / "checkpoint-5", "model."))
    assert all(tensor.isfinite().all() for tensor in trained(out / "checkpoint-5", "model.").values())
    assert not (out / "checkpoint-6").exists() and not (out / "model.safetensors").exists()

    message = str(stop.value)
    assert message.startswith("train.py: steps 4-5: 2 steps in a row had a non-finite loss or gradient norm "
                              "(max_nonfinite_steps: 2), none updated the weights; their rows: ")
    assert message.endswith(f"{out / 'checkpoint-5'} holds the weights from before them")
    assert all(origin in message for number in (4, 5) for origin in planted[number])


def test_grpo_nan_step_is_skipped_named_and_the_run_ends_normally(tmp_path, stitched_dir, monkeypatch, caplog, capsys):
    """Stage grpo: NaN pixels in what TRL feeds the loss's forward at step 2 (generated and scored as usual);
    a reward by import path that varies between completions, so every finite step has a gradient."""
    (tmp_path / "varied_reward.py").write_text("def distinct_characters(completions, **columns):\n"
                                               "    return [float(len(set(c[-1]['content']))) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = [{"messages": [{"role": "user", "content": [{"type": "image", "image": str(REPO / "examples" / "images" / f"{colour}.png")},
                                                       {"type": "text", "text": "Colour?"}]},
                          {"role": "assistant", "content": colour}]} for colour in ("red", "green", "blue", "yellow") * 2]
    data = tmp_path / "colours.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    planted = {2: None}
    undo = plant_nan_generations(set(planted), planted)
    out = tmp_path / "out"
    recipe = grpo_config(tmp_path, stitched_dir, tmp_path, train_data=[str(data)], test_size=0, max_steps=3,
                         temperature=1.0, learning_rate=1e-2, rewards=["varied_reward:distinct_characters"],
                         save_strategy="steps", save_steps=1, report_to="none")
    try:
        with caplog.at_level(logging.WARNING, logger="qwen3_smvl.training.step_guard"):
            train.main([str(recipe)])
    finally:
        undo()

    [warning] = guard_warnings(caplog)
    [row] = set(planted[2])  # one prompt, its 4 completions
    assert re.fullmatch(rf"{data}:\d+", row)
    assert warning == (f"step 2: non-finite loss and gradient norm: skipped without updating the weights "
                       f"(1 in a row, 1 in this run); rows: {row}")
    assert_equal(trained(out / "checkpoint-1", "model."), trained(out / "checkpoint-2", "model."))
    assert_equal(optimizer_state(out / "checkpoint-1"), optimizer_state(out / "checkpoint-2"))
    assert changed(trained(out / "checkpoint-2", "model."), trained(out / "checkpoint-3", "model."))
    assert all(tensor.isfinite().all() for tensor in load_file(out / "model.safetensors").values())
    assert "rank 0/1: 3 steps, 1 non-finite steps skipped" in capsys.readouterr().out


def test_max_nonfinite_steps_must_be_positive(tmp_path, config):
    with pytest.raises(SystemExit, match="max_nonfinite_steps: 0 must be at least 1"):
        run(tmp_path, {**config, "max_nonfinite_steps": 0})
