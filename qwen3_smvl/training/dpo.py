"""Stage `dpo` (`stage: dpo` in a run's YAML): prefer the `chosen` answer over the `rejected` one, through
TRL's DPOTrainer, starting from a stage-1 or stage-2 checkpoint (`init_from`).

train.py runs it as it runs SFT (the same data loading, output_dir plan, per-part learning rates and
freezing, LoRA merged at the end, resume, preemption, the non-finite guard, the standalone save); what
differs is here: preference rows only, TRL's vision preference collator over the project's rows, and
TRL's trainer with a frozen copy of `init_from` as the reference model. TRL's keys (`beta`, `loss_type`,
`loss_weights`, ...) come from its DPOConfig (train_config parses them for this stage).
"""

import json

from transformers import AutoModelForImageTextToText, Trainer
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from qwen3_smvl.data import row_shape
from qwen3_smvl.data.collate import Collator
from qwen3_smvl.data.loading import LoadedData
from qwen3_smvl.data.row_shape import DataError
from qwen3_smvl.training import preemption, run, step_guard


def preference_rows(loaded, on_bad_sample):
    """The loaded rows, refused (on_bad_sample: raise, naming file:line) or counted and dropped (skip)
    where they are not preference rows DPO can train on."""
    splits, problems = [], dict(loaded.problems)
    for ds in (loaded.train, loaded.held_out):
        columns = ds.select_columns(["rejected", "videos", "origin", "source"]).with_format("arrow")[:]
        found = [(index, origin, source, problem) for index, (rejected, videos, origin, source) in enumerate(zip(
            columns["rejected"].to_pylist(), columns["videos"].to_pylist(), columns["origin"].to_pylist(),
            columns["source"].to_pylist())) if (problem := row_shape.preference_problem(rejected, videos))]
        if found and on_bad_sample == "raise":
            listed = "\n".join(f"  {origin}: {problem}" for _, origin, _, problem in found[:10])
            more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
            raise DataError(f"{len(found)} row(s) stage dpo cannot train on (on_bad_sample: raise; "
                            f"on_bad_sample: skip drops them):\n{listed}{more}")
        for _, _, source, problem in found:
            counts = problems.setdefault(source, {})
            counts[problem.split(":")[0]] = counts.get(problem.split(":")[0], 0) + 1
        dropped = {index for index, *_ in found}
        splits.append(ds.select([i for i in range(len(ds)) if i not in dropped]) if dropped else ds)
    if not len(splits[0]):
        raise DataError("no preference rows to train on (every training row lacks a 'rejected' answer)")
    return LoadedData(splits[0], splits[1], problems)


class PreferenceCollator:
    """The project's rows (prompt + chosen answer in `messages`, `rejected` beside, undecoded images) as
    TRL's conversational preference examples, collated by TRL's DataCollatorForVisionPreference."""

    skipped = 0  # bad rows are refused before training (preference_rows, the data check)

    def __init__(self, processor, max_length):
        self.collate = DataCollatorForVisionPreference(processor=processor, max_length=max_length)

    @staticmethod
    def example(row):
        *prompt, chosen = json.loads(row["messages"])
        return {"prompt": prompt, "chosen": [chosen], "rejected": [{"role": "assistant", "content": row["rejected"]}],
                "images": [Collator.decode_image(image) for image in row["images"]]}

    def __call__(self, rows):
        return self.collate([self.example(row) for row in rows])


class GraftDPOTrainer(run.GraftTrainer, DPOTrainer):
    """TRL's DPOTrainer with the project's non-finite guard and preemption stop (GraftTrainer's)."""


def load_reference(model_args, training_args):
    """The reference policy: init_from as it was before training, frozen."""
    model = AutoModelForImageTextToText.from_pretrained(model_args.init_from, dtype=run.training_dtype(training_args),
                                                         use_kernels=False)
    return model.eval().requires_grad_(False)


def build_trainer(model, ref_model, processor, collator, training_args, run_args, train_dataset, eval_dataset,
                  optimizer_groups):
    trainer = GraftDPOTrainer(
        model=model, ref_model=ref_model, args=training_args, data_collator=step_guard.WithOrigins(collator),
        train_dataset=train_dataset, eval_dataset=eval_dataset if len(eval_dataset) else None,
        processing_class=processor, guard=step_guard.NonFiniteGuard(run_args.max_nonfinite_steps),
        preemption_stop=preemption.Preemption(run_args.preempt_signals))
    # DPOTrainer takes no optimizer_cls_and_kwargs; the Trainer reads it when it builds the optimizer in train().
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    trainer.optimizer_cls_and_kwargs = (optimizer_cls, {**optimizer_kwargs, "params": optimizer_groups})
    return trainer
