"""bench_tasks: lmms-eval benchmarks on the model being trained, logged to the Trainer's logs, training
itself unchanged; refused before training when they cannot run."""

import json
import re

import pytest

import tiny
from test_train import config, losses, run  # noqa: F401  (config: the tiny CPU run's fixture)

TASK = "docvqa_val"
SCORE = f"eval_bench_{TASK}"


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    tiny.write_benchmark_copies(root, tasks=(TASK,), rows=2)
    return root


def history(output_dir):
    return json.loads((output_dir / "trainer_state.json").read_text())["log_history"]


@pytest.fixture
def short_run(config, tmp_path):
    return {**config, "max_steps": 4, "eval_strategy": "steps", "eval_steps": 2, "per_device_eval_batch_size": 2,
            "save_strategy": "steps", "save_steps": 4}


@pytest.fixture
def plain_losses(short_run, tmp_path):
    run(tmp_path, {**short_run, "output_dir": str(tmp_path / "plain")})
    return losses(tmp_path / "plain" / "checkpoint-4")


@pytest.mark.parametrize("bench_steps, logged_at", [(0, [2, 4]), (3, [3])])
def test_scores_are_logged_at_each_evaluation_or_every_n_steps(short_run, plain_losses, bench_dir, tmp_path,
                                                              bench_steps, logged_at):
    run(tmp_path, {**short_run, "bench_tasks": [TASK], "bench_steps": bench_steps, "bench_limit": 2,
                   "bench_data_dir": str(bench_dir)})
    logged = [entry for entry in history(tmp_path / "run" / "checkpoint-4") if SCORE in entry]
    assert [entry["step"] for entry in logged] == logged_at
    assert all(0 <= entry[SCORE] <= 100 for entry in logged)
    assert losses(tmp_path / "run" / "checkpoint-4") == plain_losses  # the same steps, each still logged


@pytest.mark.parametrize("keys, message", [
    ({"bench_tasks": ["chartqa"]}, "bench_tasks: chartqa: its dataset lmms-lab-encoder/ChartQA is not in "),
    ({"bench_tasks": ["docvqa_vall"]}, "bench_tasks: unknown task 'docvqa_vall'; did you mean docvqa_val"),
    ({"bench_tasks": [TASK], "eval_strategy": "no"}, "bench_steps: 0 (at each evaluation) but eval_strategy is 'no'"),
    ({"bench_tasks": [TASK], "bench_limit": 0}, "bench_limit must be positive"),
])
def test_refused_before_training(short_run, bench_dir, tmp_path, keys, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        run(tmp_path, {**short_run, "bench_data_dir": str(bench_dir), **keys})
    assert not (tmp_path / "run").exists()
