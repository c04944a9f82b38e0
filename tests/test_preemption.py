"""Preemption: a run signalled mid-training finishes its optimizer step, leaves a complete checkpoint
at that step and exits with status 75; the same command resumes to the uninterrupted run's weights.
Two DDP ranks (gloo) signalled, one of them or all processes through slurm_train.sh's time-limit
path, stop after the same step and save it together."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from qwen3_smvl.training import preemption, safe_resume

from conftest import REPO, free_port
from test_resume import assert_same_weights, connector_of
from test_train import config, run, write_yaml  # noqa: F401  (the `config` fixture)

STEPS = 24
STOPPED = re.compile(r"train\.py: (SIG\w+) received: stopped after step (\d+) with the complete checkpoint (\S+); "
                     "run the same command to resume")


@pytest.fixture
def preemptible(config):  # noqa: F811
    return {**config, "max_steps": STEPS, "demo_max_new_tokens": 1, "disable_tqdm": True}


def launch(command, cwd, stderr_path, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr_path.open("w"), text=True)


def signal_after_first_step(process, send):
    """Reads the run's output until it logs its first step, then calls `send(process)`; returns the
    run's whole output once it exited."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("{'loss'"):
            send(process)
            break
    lines.extend(process.stdout)
    process.wait(timeout=600)
    return "".join(lines)


def logged_steps(output):
    return sum(line.startswith("{'loss'") for line in output.splitlines())


def stops(stderr_path):
    """(signal, step, checkpoint) of each rank's last words."""
    return [(name, int(step), checkpoint) for name, step, checkpoint in STOPPED.findall(stderr_path.read_text())]


def assert_only_complete_checkpoint(output_dir, step):
    assert safe_resume.checkpoints_in(output_dir) == [output_dir / f"checkpoint-{step}"]
    assert safe_resume.why_incomplete(output_dir / f"checkpoint-{step}") is None
    assert not (output_dir / "model.safetensors").exists()  # stopped before the standalone model


def test_signalled_run_saves_where_it_was_and_resumes_to_the_uninterrupted_weights(tmp_path, preemptible):
    run(tmp_path, {**preemptible, "output_dir": str(tmp_path / "uninterrupted")})
    reference = connector_of(tmp_path / "uninterrupted")

    out = tmp_path / "preempted"
    command = [sys.executable, str(REPO / "train.py"), write_yaml(tmp_path / "preempted.yaml",
                                                               {**preemptible, "output_dir": str(out)})]
    stderr = tmp_path / "stderr.txt"
    process = launch(command, tmp_path, stderr)
    # `kill -TERM`, as a spot instance or scancel sends it (the two-rank test covers SLURM's SIGUSR1)
    output = signal_after_first_step(process, lambda running: running.send_signal(signal.SIGTERM))
    assert process.returncode == preemption.PREEMPTED_EXIT_STATUS, stderr.read_text()[-3000:]
    [(name, step, checkpoint)] = stops(stderr)
    assert name == "SIGTERM" and checkpoint == str(out / f"checkpoint-{step}") and step < STEPS
    assert logged_steps(output) == step  # it stopped after the step it was on
    assert_only_complete_checkpoint(out, step)

    process = launch(command, tmp_path, stderr)  # the same command again
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, stderr.read_text()[-3000:]
    assert f"resuming from {out / f'checkpoint-{step}'}" in output
    assert_same_weights(connector_of(out), reference)


def test_signal_names_are_checked_before_the_run(tmp_path, preemptible):
    with pytest.raises(SystemExit, match="preempt_signals: 'SIGKILL' is not a signal a process can catch"):
        run(tmp_path, {**preemptible, "preempt_signals": ["SIGTERM", "SIGKILL"]})


def test_a_signal_in_the_last_step_lets_the_run_save_its_final_model(tmp_path):
    """Resumed from a checkpoint at max_steps the Trainer would train one step more, so at the last
    step the run does not stop for a checkpoint: it goes on to save the final model."""
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    stop = preemption.Preemption(["SIGTERM"])
    stop.note(signal.SIGTERM, None)
    for step, stops_here in ((STEPS - 1, True), (STEPS, False)):
        control = TrainerControl()
        stop.signal_name = None
        stop.on_step_end(args, TrainerState(global_step=step, max_steps=STEPS), control)
        assert control.should_training_stop == control.should_save == stops_here
        assert stop.signal_name == ("SIGTERM" if stops_here else None)


def worker_of_rank(launcher, rank):
    return next(child for child in psutil.Process(launcher.pid).children() if child.environ().get("RANK") == str(rank))


def fake_slurm(bin_dir):
    """srun, scancel and scontrol for one node: srun runs its command here; scancel signals every
    process of that step, as SLURM's cgroup tracking does; scontrol names this host and notes a requeue."""
    bin_dir.mkdir()
    scripts = {
        "srun": '#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\necho $$ > "$FAKE_SLURM/step.pid"\n'
                'SLURM_NODEID=0 exec "$@"\n',
        "scontrol": '#!/bin/bash\ncase $1 in show) echo 127.0.0.1 ;; requeue) echo "$2" >> "$FAKE_SLURM/requeued" ;; esac\n',
        "scancel": f"#!{sys.executable}\nimport os, pathlib, signal, sys, psutil\n"
                   "number = signal.Signals['SIG' + sys.argv[1].split('=')[1]]\n"
                   "step = psutil.Process(int(pathlib.Path(os.environ['FAKE_SLURM'], 'step.pid').read_text()))\n"
                   "for process in [step, *step.children(recursive=True)]:\n    process.send_signal(number)\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM": str(bin_dir), "SLURM_JOB_ID": "4242",
            "SLURM_JOB_NODELIST": "node1", "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "2",
            "ACCELERATE": str(Path(sys.executable).with_name("accelerate")), "ACCELERATE_CONFIG": "accelerate_configs/ddp.yaml",
            "MAIN_PROCESS_PORT": str(free_port())}


def test_two_ranks_stop_after_the_same_step_when_one_or_all_are_signalled(tmp_path, preemptible):
    out = tmp_path / "ddp"
    config_path = write_yaml(tmp_path / "ddp.yaml", {**preemptible, "per_device_train_batch_size": 1,
                                                      "output_dir": str(out)})
    stderr = tmp_path / "stderr.txt"

    # SIGTERM to rank 1 alone: rank 0 learns of it after the step and both save that step
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), str(REPO / "train.py"), config_path]
    process = launch(command, tmp_path, stderr)
    signal_after_first_step(process, lambda launcher: worker_of_rank(launcher, 1).send_signal(signal.SIGTERM))
    assert process.returncode != 0  # torchrun reports the ranks' status 75 as a failure
    [(_, first, _), (_, also_first, _)] = stops(stderr)
    assert first == also_first < STEPS
    assert_only_complete_checkpoint(out, first)

    # slurm_train.sh, started again, resumes; its time-limit signal reaches every process of the job
    process = launch(["bash", "slurm_train.sh", config_path], REPO, stderr, fake_slurm(tmp_path / "bin"))
    output = signal_after_first_step(process, lambda script: script.send_signal(signal.SIGUSR1))
    assert f"resuming from {out / f'checkpoint-{first}'}" in output
    [(name, second, _), (_, also_second, _)] = stops(stderr)
    assert name == "SIGUSR1" and second == also_second and first < second < STEPS
    assert safe_resume.why_incomplete(out / f"checkpoint-{second}") is None
    assert "requeueing job 4242" in output and (tmp_path / "bin" / "requeued").read_text() == "4242\n"
