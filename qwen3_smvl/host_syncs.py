"""Counting the points where a training step waits for the device to hand a value to the host.

Counted on any device, CPU included, from the operators the step dispatches (a TorchDispatchMode):
`_local_scalar_dense` (`.item()`, `int(t)`, `bool(t)`, `if t:`), ops whose output size depends on
the values (`nonzero`, `masked_select`, boolean indexing, `unique`, `repeat_interleave` without
`output_size`), `equal`, and copies from an accelerator to the CPU. `Tensor.tolist()` bypasses the
dispatcher on CPU tensors, so it is counted where it is called. On a GPU each of these is a
device-to-host synchronisation (what `torch.cuda.set_sync_debug_mode` reports); on a CPU they cost
nothing, but the count is the same, so a test on CPU can hold the step to its budget.
"""

import collections
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
VALUE_SIZED = {aten.nonzero.default, aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
               aten.unique_consecutive.default, aten.equal.default, aten._local_scalar_dense.default}


def waits_for_device(func, args, kwargs):
    if func in VALUE_SIZED:
        return True
    if func is aten.repeat_interleave.Tensor:
        return kwargs.get("output_size") is None
    if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
        return any(index is not None and index.dtype in (torch.bool, torch.uint8) for index in indices)
    if func is aten._to_copy.default:
        source, target = args[0], kwargs.get("device")
        return source.device.type not in ("cpu", "meta") and target is not None and torch.device(target).type == "cpu"
    return False


class HostSyncs(TorchDispatchMode):
    """`counts`: operator name -> how often it made the host wait; `total`: their sum."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if waits_for_device(func, args, kwargs):
            self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **kwargs)

    @property
    def total(self):
        return sum(self.counts.values())


@contextmanager
def counting_host_syncs():
    """with counting_host_syncs() as syncs: ... ; syncs.total, syncs.counts"""
    original_tolist = torch.Tensor.tolist
    syncs = HostSyncs()

    def counted_tolist(tensor):
        if tensor.device.type == "cpu":  # an accelerator's tensor is counted by its copy to the CPU
            syncs.counts["tolist"] += 1
        return original_tolist(tensor)

    torch.Tensor.tolist = counted_tolist
    try:
        with syncs:
            yield syncs
    finally:
        torch.Tensor.tolist = original_tolist
