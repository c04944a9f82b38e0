"""Which checkpoint a run resumes from, when the last save may have been cut off.

The Trainer writes `checkpoint-N` in place (weights, optimizer, scheduler, RNG, `trainer_state.json`
last), so a kill mid-save leaves a directory that `get_last_checkpoint` would pick: its weights fail
to load, or, without `trainer_state.json`, the run silently restarts at step 0. Here a checkpoint
counts only when complete; the others are moved aside (renamed `incomplete-checkpoint-N`, a name the
Trainer's resume and rotation never match, so nothing is deleted) before the run resumes from the
last complete one.
"""

import json
import logging
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")  # as get_last_checkpoint matches them
ASIDE_PREFIX = "incomplete-"
TRAINER_STATE = "trainer_state.json"
# Any one of these holds a checkpoint's model weights (full model, sharded, peft adapter, FSDP shards).
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
           "pytorch_model.bin", "pytorch_model.bin.index.json")
TORCH_PICKLES = (".pt", ".pth", ".bin")  # torch.save's zip files: a cut-off one has no central directory


class CheckpointError(ValueError):
    """output_dir holds something a run must not start on; the message says what to do."""


def checkpoints_in(output_dir):
    """checkpoint-N directories of output_dir, oldest step first."""
    found = [(int(match[1]), path) for path in Path(output_dir).iterdir()
             if path.is_dir() and (match := CHECKPOINT_NAME.match(path.name))]
    return [path for _, path in sorted(found)]


def unreadable_file(path):
    """Why the file at `path` cannot be loaded, or None when it reads."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(path, "pt"):  # checks the header covers the file exactly
                return None
        if path.suffix in TORCH_PICKLES:
            zipfile.ZipFile(path).close()
        if path.suffix == ".json":
            json.loads(path.read_text())
    except (SafetensorError, zipfile.BadZipFile, json.JSONDecodeError, OSError, UnicodeDecodeError) as error:
        return f"{path.name} unreadable ({type(error).__name__})"
    return None


def missing_shards(index_path):
    shards = set(json.loads(index_path.read_text()).get("weight_map", {}).values())
    return sorted(shard for shard in shards if not (index_path.parent / shard).is_file())


def why_incomplete(checkpoint):
    """The first reason `checkpoint` cannot be resumed from, or None when it is complete."""
    if not (checkpoint / TRAINER_STATE).is_file():
        return f"no {TRAINER_STATE}"
    if not any((checkpoint / name).is_file() for name in WEIGHTS) and not list(checkpoint.glob("*fsdp*")):
        return "no model weights"
    for path in sorted(checkpoint.rglob("*")):
        problem = path.is_file() and unreadable_file(path)
        if problem:
            return problem
    for index in checkpoint.glob("*.index.json"):
        if missing := missing_shards(index):
            return f"{index.name} names missing shards {missing}"
    return None


@dataclass
class OutputPlan:
    """What a run will do with its output_dir, decided before anything in it changes."""

    output_dir: Path
    resume_from: Path | None
    set_aside: dict  # incomplete checkpoint -> reason
    delete: list  # old checkpoints under overwrite_output_dir

    def apply(self, is_main_process):
        """Moves incomplete checkpoints aside and deletes overwritten ones (main process only);
        returns the checkpoint to resume from, or None to start afresh."""
        if is_main_process:
            for checkpoint in self.delete:
                shutil.rmtree(checkpoint)
            for checkpoint in self.set_aside:
                checkpoint.rename(aside_name(checkpoint))
        return self.resume_from

    def describe(self):
        lines = []
        if self.set_aside:
            named = "; ".join(f"{path.name} ({reason})" for path, reason in self.set_aside.items())
            lines.append(f"warning: incomplete checkpoints moved aside as {ASIDE_PREFIX}*: {named}")
        if self.resume_from:
            lines.append(f"resuming from {self.resume_from} (set overwrite_output_dir: true to start afresh)")
        elif self.set_aside:
            lines.append("no complete checkpoint left: starting afresh")
        return lines


def aside_name(checkpoint):
    target = checkpoint.with_name(ASIDE_PREFIX + checkpoint.name)
    copy = 1
    while target.exists():
        copy += 1
        target = checkpoint.with_name(f"{ASIDE_PREFIX}{checkpoint.name}.{copy}")
    return target


def plan_output_dir(output_dir, overwrite):
    """Reads output_dir and decides, changing nothing: resume from its last complete checkpoint,
    or start afresh. A non-empty output_dir that never held a checkpoint is refused."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return OutputPlan(output_dir, None, {}, [])
    checkpoints = checkpoints_in(output_dir)
    if overwrite:
        return OutputPlan(output_dir, None, {}, checkpoints)
    set_aside_earlier = list(output_dir.glob(f"{ASIDE_PREFIX}{PREFIX_CHECKPOINT_DIR}-*"))
    if not checkpoints and not set_aside_earlier:
        raise CheckpointError(
            f"output_dir {output_dir} is not empty and holds no checkpoint-* to resume from; "
            "choose another output_dir or set overwrite_output_dir: true"
        )
    reasons = {checkpoint: why_incomplete(checkpoint) for checkpoint in checkpoints}
    complete = [checkpoint for checkpoint, reason in reasons.items() if reason is None]
    incomplete = {checkpoint: reason for checkpoint, reason in reasons.items() if reason}
    return OutputPlan(output_dir, complete[-1] if complete else None, incomplete, [])
