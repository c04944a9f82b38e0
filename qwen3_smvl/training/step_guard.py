"""Non-finite steps: a step whose loss or gradient norm is not finite never touches the weights.

The Trainer applies such a step (one NaN batch turns every trained weight into NaN) and, with
`logging_nan_inf_filter`, even hides its loss from the logs. Here the step's gradients are dropped
before the optimizer runs: AdamW and the others skip a parameter without a gradient (no update, no
weight decay, optimizer state unchanged); the learning-rate schedule moves on. The step is counted
and logged with its rows' origins (file:line), and after `max_nonfinite_steps` such steps in a row
the run stops with a checkpoint. Under DDP/FSDP the ranks decide together after every step, so
every rank skips the same steps.
"""

import logging

import torch
from accelerate.utils import gather, gather_object
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

ORIGINS = "row_origins"  # batch key: the rows' origins, from the collator to compute_loss
NAMED_ROWS = 20  # rows an error names before "and N more"


class WithOrigins:
    """The collator's batches plus the origin of each row (compute_loss takes it out again)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, rows):
        return {**self.collator(rows), ORIGINS: [row.get("origin") or "?" for row in rows]}


def gradient_norms_finite(model):
    """Whether this rank's gradients have a finite norm (under FSDP: its shards): one fused (foreach)
    norm, as clip_grad_norm_ computes it, rather than an isfinite copy of every gradient."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grads = [grad.to_local() if hasattr(grad, "to_local") else grad for grad in grads]
    if not grads:
        return torch.tensor(True)
    return torch.isfinite(torch.nn.utils.get_total_norm(grads))


def listed(rows):
    shown = ", ".join(rows[:NAMED_ROWS])
    return shown + (f" and {len(rows) - NAMED_ROWS} more" if len(rows) > NAMED_ROWS else "")


class NonFiniteGuard(TrainerCallback):
    """Skips steps with a non-finite loss or gradient norm; `error` is set once `max_in_a_row` came in
    a row, and the Trainer then saves a checkpoint and stops. The trainer's compute_loss reports each
    micro-batch's loss and rows through `record`."""

    def __init__(self, max_in_a_row):
        self.max_in_a_row = max_in_a_row
        self.skipped = 0
        self.in_a_row = []  # (step, rows) of the latest steps, while they are non-finite
        self.error = None
        self.micro_batches = []  # (loss finite: a 0-d tensor, origins) of the current step

    def record(self, loss, origins):
        self.micro_batches.append((torch.isfinite(loss.detach()).all(), origins))

    def on_step_begin(self, args, state, control, **kwargs):
        self.micro_batches = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        losses_finite = torch.stack([finite for finite, _ in self.micro_batches] or [torch.tensor(True)]).all()
        # Under fp16 the GradScaler skips steps with inf/NaN gradients itself: that is how it finds its scale.
        grads_finite = torch.tensor(True) if args.fp16 else gradient_norms_finite(model)
        mine = torch.stack([~losses_finite.to(args.device), ~grads_finite.to(args.device)]).int()
        bad = gather(mine[None]).bool()  # (ranks, [loss, gradients])
        if not bad.any():
            self.in_a_row.clear()
            return
        model.zero_grad(set_to_none=True)  # the optimizer then leaves every weight as it is
        rows = self.rows_to_name(loss_somewhere=bool(bad[:, 0].any()))
        self.skipped += 1
        step = state.global_step + 1
        self.in_a_row.append((step, rows))
        what = " and ".join(name for name, found in zip(("loss", "gradient norm"), bad.any(dim=0).tolist()) if found)
        if state.is_world_process_zero:
            logger.warning(f"step {step}: non-finite {what}: skipped without updating the weights "
                           f"({len(self.in_a_row)} in a row, {self.skipped} in this run); rows: {listed(rows)}")
        if len(self.in_a_row) >= self.max_in_a_row:
            first, last = self.in_a_row[0][0], step
            all_rows = list(dict.fromkeys(row for _, step_rows in self.in_a_row for row in step_rows))
            self.error = (f"steps {first}-{last}: {len(self.in_a_row)} steps in a row had a non-finite loss or gradient "
                          f"norm (max_nonfinite_steps: {self.max_in_a_row}), none updated the weights; their rows: "
                          f"{listed(all_rows)}")

    def rows_to_name(self, loss_somewhere):
        """Every rank's rows of the micro-batches whose loss was not finite; when only the gradients were,
        every row of the step (a NaN gradient is summed over the ranks and cannot be traced to one). Each row
        once, in order: GRPO's micro-batches hold a prompt's row once per completion."""
        mine = [row for finite, origins in self.micro_batches if not (loss_somewhere and bool(finite)) for row in origins]
        return list(dict.fromkeys(gather_object(mine)))

    def on_step_end(self, args, state, control, **kwargs):
        if self.error:  # save where the weights still are what the last finite step left
            control.should_save, control.should_training_stop, control.should_evaluate = True, True, False
