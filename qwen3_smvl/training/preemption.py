"""Preemption-safe runs: on one of `preempt_signals` (SIGTERM, SIGUSR1 by default) the run finishes the
optimizer step it is on, saves a complete checkpoint there and exits with status 75 (EX_TEMPFAIL):
preempted, resume with the same command.

The handler only notes the signal. After every optimizer step the ranks combine what they noted (one
all-gather of one number), so a signal that reached any rank stops all of them after the same step,
and they save that checkpoint together: no rank is left waiting in a collective. A checkpoint cut
off by a later SIGKILL is set aside on the next start (qwen3_smvl/training/safe_resume.py), which then resumes from the
last complete one.
"""

import logging
import signal

import torch
from accelerate.utils import gather
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

PREEMPTED_EXIT_STATUS = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, try again
UNCATCHABLE = ("SIGKILL", "SIGSTOP")


class SignalNameError(ValueError):
    pass


def signal_numbers(names):
    """The signals `names` lists (`SIGTERM`, `TERM`, `sigusr1`), refused when unknown or uncatchable."""
    numbers = []
    for name in names:
        full = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
        if full not in signal.Signals.__members__ or full in UNCATCHABLE:
            raise SignalNameError(f"preempt_signals: '{name}' is not a signal a process can catch "
                                  "(e.g. SIGTERM, SIGUSR1, SIGUSR2, SIGINT)")
        numbers.append(signal.Signals[full])
    return numbers


class Preemption(TrainerCallback):
    """Stops training after the step during which one of `signals` arrived, with a checkpoint there.
    `signal_name` is then the signal's name (on every rank, also those it did not reach)."""

    def __init__(self, signal_names):
        self.signals = signal_numbers(signal_names)
        self.received = 0  # the first signal's number on this rank
        self.signal_name = None
        self.previous_handlers = {}

    def note(self, number, frame):
        self.received = self.received or number

    def on_train_begin(self, args, state, control, **kwargs):
        # Installed for the training loop only: before it, there is nothing to save; after it, the run
        # is saving its final model anyway. DataLoader workers forked from here inherit the handler
        # and keep going when a whole process group is signalled (SLURM, `kill -- -PGID`).
        self.previous_handlers = {number: signal.signal(number, self.note) for number in self.signals}

    def on_step_end(self, args, state, control, **kwargs):
        received = int(gather(torch.tensor([self.received], device=args.device)).max())
        if not received:
            return
        if state.global_step >= state.max_steps:
            # Training is complete: the run saves its final model now. (A checkpoint here would not do:
            # the Trainer resumed from a checkpoint at max_steps trains one step more.)
            if state.is_world_process_zero:
                logger.warning(f"{signal.Signals(received).name} at the last step: saving the final model")
            return
        self.signal_name = signal.Signals(received).name
        control.should_save, control.should_training_stop, control.should_evaluate = True, True, False

    def on_train_end(self, args, state, control, **kwargs):
        for number, handler in self.previous_handlers.items():
            signal.signal(number, handler)
        self.previous_handlers = {}
