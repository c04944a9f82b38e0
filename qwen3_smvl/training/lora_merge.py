"""A LoRA run's end: the adapters merged into a standalone checkpoint, verified before it is saved.

The adapters are put on by trainable.py (through peft); the merge is peft's `merge_and_unload`, done in
float32 and checked against the adapter model's logits on one batch, so a merge that lost or changed
the adapters is an error instead of a silently untrained model.
"""

import torch

MERGE_TOLERANCE = 1e-4  # largest logit difference allowed, relative to the largest logit (float32)
ADAPTER_DIR = "adapter"


class MergeError(RuntimeError):
    """The merged model does not compute what the adapter model computes."""


def logits_on(model, probe):
    with torch.no_grad():
        return model(**probe).logits.float()


def merge_verified(peft_model, probe):
    """The base model with the adapters merged into its weights, in float32 (a merge into bf16
    weights would round). Refuses to return it unless its logits on `probe` equal the adapter
    model's within MERGE_TOLERANCE."""
    peft_model.eval().float()
    expected = logits_on(peft_model, probe)
    merged = peft_model.merge_and_unload()
    difference = (logits_on(merged, probe) - expected).abs().max().item()
    allowed = MERGE_TOLERANCE * expected.abs().max().item()
    if not difference <= allowed:
        raise MergeError(f"the merged model's logits differ from the adapter model's by {difference:.3g} "
                         f"(allowed {allowed:.3g}): the merge lost or changed the adapters; the adapter itself "
                         f"is saved under {ADAPTER_DIR}/")
    return merged
