"""Text-only batches beside a trained vision tower or connector: every batch's backward reaches the same weights.

A batch without images never runs the vision tower and the connector, so their weights get no gradient
on that rank. DDP with `find_unused_parameters` off (the Trainer turns it off under activation
checkpointing) then waits forever for them or fails with "Expected to have finished reduction", and
FSDP2 reduce-scatters only the gradients a rank has, so ranks with and without images disagree on what
to reduce. TRL's GRPOTrainer turns `find_unused_parameters` on for vision-language models; that mends
DDP only, and costs a graph traversal every step. Here a training forward without images also runs
the vision tower and the connector on one small blank image and adds their output times zero to the
model's output: the loss and the gradients are unchanged (the blank image's gradients are exactly
zero), and every rank's backward reaches the same weights, whatever rows it drew, under DDP and FSDP2
alike, on one process as on many.
"""

import torch


def blank_image(model):
    """The smallest image the connector accepts: one patch grid of scale_factor x scale_factor patches,
    which its pixel shuffle folds into one token. All zeros, which SmolVLM reads as padding but keeps
    when it is the only image."""
    side = model.config.vision_config.patch_size * model.config.scale_factor
    return torch.zeros(1, 1, 3, side, side, dtype=model.dtype, device=model.device)


def add_blank_image(module, args, kwargs, output):
    if not (module.training and torch.is_grad_enabled()) or kwargs.get("pixel_values") is not None:
        return output
    features = module.get_image_features(blank_image(module)).pooler_output
    output.last_hidden_state = output.last_hidden_state + sum(f.sum() for f in features).to(output.last_hidden_state.dtype) * 0
    return output


def keep_vision_in_every_step(model):
    """Makes training forwards without images run the vision tower and connector on a blank image, when
    any of their weights trains (peft's adapters and modules_to_save included)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    vision_side = [*base.model.vision_model.parameters(), *base.model.connector.parameters()]
    if any(parameter.requires_grad for parameter in vision_side):
        base.model.register_forward_hook(add_blank_image, with_kwargs=True)
    return model
