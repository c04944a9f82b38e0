"""Non-finite steps: a planted NaN batch is skipped without touching the weights or the optimizer,
counted and named by its rows; K such steps in a row stop the run with a checkpoint and an error
naming the rows. The fault is planted by tests only (tests/faults.py): batches get NaN pixels."""

import logging

import pytest
import torch
from safetensors.torch import load_file

from faults import plant_nan_batches
from test_train import config, run  # noqa: F401  (the `config` fixture)


@pytest.fixture
def nan_batches():
    """Training batches whose numbers (1-based, in collation order) are added to `numbers` get NaN
    pixel values; `origins` records the rows of each such batch."""
    planted = {"numbers": set(), "origins": {}}
    undo = plant_nan_batches(planted["numbers"], planted["origins"])
    yield planted
    undo()


def trained(checkpoint):
    weights = load_file(checkpoint / "model.safetensors")
    return {name: tensor for name, tensor in weights.items() if ".connector." in name}


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


def test_max_nonfinite_steps_must_be_positive(tmp_path, config):
    with pytest.raises(SystemExit, match="max_nonfinite_steps: 0 must be at least 1"):
        run(tmp_path, {**config, "max_nonfinite_steps": 0})
