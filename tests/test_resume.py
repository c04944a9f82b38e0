"""Crash-safe resume: a run killed mid-save, or left with half-written checkpoints, resumes with the
same command from its last complete checkpoint and ends where an uninterrupted run ends."""

import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from qwen3_smvl.training import safe_resume

from conftest import REPO
from test_train import config, run, write_yaml  # noqa: F401  (the `config` fixture)

STEPS, EVERY = 24, 3


@pytest.fixture
def checkpointed(config):  # noqa: F811
    return {**config, "max_steps": STEPS, "save_strategy": "steps", "save_steps": EVERY, "demo_max_new_tokens": 1}


@pytest.fixture
def reference(tmp_path, checkpointed):
    """The connector after an uninterrupted run."""
    out = tmp_path / "uninterrupted"
    run(tmp_path, {**checkpointed, "output_dir": str(out)})
    return connector_of(out)


def connector_of(model_dir):
    weights = load_file(model_dir / "model.safetensors")
    return {name: tensor.float() for name, tensor in weights.items() if ".connector." in name}


def assert_same_weights(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-4, rtol=0)


def complete_steps(output_dir):
    return [int(path.name.split("-")[1]) for path in safe_resume.checkpoints_in(output_dir)
            if safe_resume.why_incomplete(path) is None]


def half_write(checkpoint):
    """What a kill during `save_model` leaves: weights cut in the middle (if the kill came before them: none),
    nothing after them."""
    weights = checkpoint / "model.safetensors"
    if weights.exists():
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for later in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        (checkpoint / later).unlink(missing_ok=True)


def kill_after_first_checkpoint(config_path, cwd):
    """Starts `python train.py cfg.yaml` and SIGKILLs it as soon as its first checkpoint is complete."""
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), config_path], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = cwd / "killed" / f"checkpoint-{EVERY}"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if (first / "trainer_state.json").exists() and safe_resume.why_incomplete(first) is None:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_killed_run_with_a_half_written_checkpoint_resumes_to_the_uninterrupted_weights(
        tmp_path, checkpointed, reference, capsys):
    out = tmp_path / "killed"
    config_path = write_yaml(tmp_path / "killed.yaml", {**checkpointed, "output_dir": str(out)})
    kill_after_first_checkpoint(config_path, tmp_path)
    assert not (out / "model.safetensors").exists(), "the run finished before the kill"
    last = max(complete_steps(out))
    planted = out / f"checkpoint-{last + EVERY}"
    if not planted.exists():  # the kill may itself have cut a save short; if not, plant one
        shutil.copytree(out / f"checkpoint-{last}", planted)
    half_write(planted)

    run(tmp_path, {**checkpointed, "output_dir": str(out)})  # the same command again
    printed = capsys.readouterr().out
    assert f"incomplete checkpoints moved aside as incomplete-*: {planted.name}" in printed
    assert f"resuming from {out / f'checkpoint-{last}'}" in printed
    assert (out / f"incomplete-{planted.name}").is_dir()
    assert_same_weights(connector_of(out), reference)


def test_checkpoint_without_trainer_state_is_not_resumed_from(tmp_path, checkpointed, reference, capsys):
    """Without trainer_state.json the Trainer would load the weights and silently restart at step 0."""
    out = tmp_path / "run"
    run(tmp_path, {**checkpointed, "max_steps": 6, "output_dir": str(out)})
    shutil.rmtree(out / "checkpoint-3")
    (out / "checkpoint-6" / "trainer_state.json").unlink()
    (out / "model.safetensors").unlink()

    run(tmp_path, {**checkpointed, "output_dir": str(out)})
    printed = capsys.readouterr().out
    assert "checkpoint-6 (no trainer_state.json)" in printed and "no complete checkpoint left: starting afresh" in printed
    assert (out / "incomplete-checkpoint-6").is_dir()
    assert_same_weights(connector_of(out), reference)


def test_rotation_keeps_a_complete_checkpoint_when_the_newest_is_half_written(tmp_path, checkpointed):
    out = tmp_path / "run"
    limited = {**checkpointed, "max_steps": 6, "save_total_limit": 1, "output_dir": str(out)}
    run(tmp_path, limited)
    assert complete_steps(out) == [6]
    shutil.copytree(out / "checkpoint-6", out / "checkpoint-9")
    half_write(out / "checkpoint-9")

    run(tmp_path, {**limited, "max_steps": 12})
    assert complete_steps(out) == [12]
    assert (out / "incomplete-checkpoint-9").is_dir()  # set aside, never rotated away


@pytest.mark.parametrize("damage, reason", [
    (lambda c: (c / "trainer_state.json").write_text('{"global_step": 6, '), "trainer_state.json unreadable"),
    (lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:100]), "optimizer.pt unreadable"),
    (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
])
def test_each_kind_of_damage_is_named(tmp_path, checkpointed, damage, reason):
    out = tmp_path / "run"
    run(tmp_path, {**checkpointed, "max_steps": 6, "output_dir": str(out)})
    damage(out / "checkpoint-6")
    plan = safe_resume.plan_output_dir(out, overwrite=False)
    assert plan.resume_from == out / "checkpoint-3"
    assert list(plan.set_aside) == [out / "checkpoint-6"] and plan.set_aside[out / "checkpoint-6"].startswith(reason)
    assert (out / "checkpoint-6").is_dir() and not list(out.glob("incomplete-*"))  # planning changes nothing
