"""Benchmarks during training (the `bench_tasks` key, off by default), as nanoVLM runs lmms-eval:
every `bench_steps` optimizer steps, or at each evaluation when that is 0, the model being trained
answers the first `bench_limit` questions of each task through eval_bench.py's path (lmms-eval's
task definitions and metrics, local copies in `bench_data_dir`), and the scores (0-100) go to the
Trainer's logs as `eval_bench_<task>`: trainer_state.json's log_history, the console, SwanLab
(`eval/bench_<task>`).

Under DDP every rank answers its share of the questions (lmms-eval shards them across the ranks
and gathers the answers on rank 0, which scores them) and every rank logs rank 0's scores; under
FSDP the ranks' generate() calls would have to run in lockstep, so the key is refused there.
"""

import random
import tempfile

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from transformers import TrainerCallback

from qwen3_smvl.evaluation import benchmarks
from qwen3_smvl.training.train_config import ConfigError

LOG_PREFIX = "eval_bench_"


class BenchCallback(TrainerCallback):
    def __init__(self, trainer, tasks, data_dir, limit, every_steps):
        self.trainer, self.limit, self.every_steps = trainer, limit, every_steps
        self.configs = benchmarks.checked_configs(tasks, data_dir)  # checked before training (train_config)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_steps and state.global_step % self.every_steps == 0:
            self.log_scores(control)

    def on_evaluate(self, args, state, control, **kwargs):
        if not self.every_steps:
            self.log_scores(control)

    def scores(self):
        """{task: score} of the model as it is now, its training mode and the run's random state restored."""
        from qwen3_smvl.evaluation.harness_model import Qwen3SmVL

        trainer, model = self.trainer, self.trainer.model
        was_training, rng = model.training, (random.getstate(), np.random.get_state())
        devices = [trainer.args.device] if trainer.args.device.type == "cuda" else []
        model.eval()
        try:  # lmms-eval seeds the global generators; fork_rng gives torch's back, the rest by hand
            with torch.random.fork_rng(devices=devices), trainer.accelerator.autocast(), \
                    tempfile.TemporaryDirectory(prefix="bench_submissions_") as submissions:
                harness = Qwen3SmVL(trainer.args.output_dir, batch_size=trainer.args.per_device_eval_batch_size,
                                    loaded=(model, trainer.processing_class))
                scores, _ = benchmarks.evaluate(harness, self.configs, self.limit, benchmarks.task_manager(),
                                                output_path=submissions)
        finally:
            model.train(was_training)
            random.setstate(rng[0])
            np.random.set_state(rng[1])
        return scores

    def log_scores(self, control):
        scores = broadcast_object_list([self.scores()])[0]  # rank 0's are the gathered answers' scores
        should_log = control.should_log  # the Trainer's own log of this step is still to come; trainer.log clears it
        self.trainer.log({f"{LOG_PREFIX}{task}": score for task, score in scores.items() if score is not None})
        control.should_log = should_log


def attach(trainer, run_args):
    """Adds the benchmark callback to `trainer` when `bench_tasks` is set."""
    if not run_args.bench_tasks:
        return
    if trainer.is_fsdp_enabled:
        raise ConfigError("bench_tasks: benchmarks during training run under DDP or one process, not FSDP "
                          "(evaluate the saved model with eval_bench.py instead)")
    trainer.add_callback(BenchCallback(trainer, run_args.bench_tasks, run_args.bench_data_dir, run_args.bench_limit,
                                       run_args.bench_steps))
