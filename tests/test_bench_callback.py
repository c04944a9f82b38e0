"""bench_tasks: lmms-eval benchmarks on the model being trained, logged to the Trainer's logs, training
itself unchanged; refused before training when they cannot run."""

import json
import re

import pytest

from qwen3_smvl import tiny

from test_eval_bench import drop_split
from test_train import config, losses, run, train_on_two_cpu_ranks, write_yaml  # noqa: F401  (config: a fixture)

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


def test_scores_are_logged_at_each_evaluation_and_training_is_unchanged(short_run, plain_losses, bench_dir, tmp_path):
    run(tmp_path, {**short_run, "bench_tasks": [TASK], "bench_limit": 2, "bench_data_dir": str(bench_dir)})
    logged = [entry for entry in history(tmp_path / "run" / "checkpoint-4") if SCORE in entry]
    assert [entry["step"] for entry in logged] == [2, 4]
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


def test_a_copy_that_does_not_open_is_refused_before_training(short_run, tmp_path):
    copy = tiny.write_benchmark_copies(tmp_path / "bench", tasks=(TASK,), rows=2)[TASK][0]
    drop_split(copy / "README.md", "validation")
    with pytest.raises(SystemExit, match=re.escape(
            f"bench_tasks: {TASK}: its copy {copy} does not open as lmms-eval opens it (no validation split "
            f"(config DocVQA has test)); fetch it with: bash download_resource.sh --bench {TASK}")):
        run(tmp_path, {**short_run, "bench_tasks": [TASK], "bench_data_dir": str(tmp_path / "bench")})
    assert not (tmp_path / "run").exists()


def test_every_n_steps_under_two_ddp_ranks(short_run, bench_dir, tmp_path):
    """Both gloo ranks answer (lmms-eval shards the questions and gathers them on rank 0): no hang."""
    path = write_yaml(tmp_path / "ddp.yaml", {**short_run, "max_steps": 2, "per_device_train_batch_size": 1,
                                              "eval_strategy": "no", "save_steps": 2, "bench_tasks": [TASK],
                                              "bench_steps": 2, "bench_limit": 2, "bench_data_dir": str(bench_dir)})
    train_on_two_cpu_ranks(path, cwd=tmp_path)
    logged = [entry for entry in history(tmp_path / "run" / "checkpoint-2") if SCORE in entry]
    assert [entry["step"] for entry in logged] == [2] and 0 <= logged[0][SCORE] <= 100
