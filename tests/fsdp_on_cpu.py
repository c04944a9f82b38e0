"""Runs train.py under `accelerate launch` with FSDP on CPU ranks, for tests on machines without GPUs.

accelerate 1.15 turns an FSDP config into FSDP only on accelerators; on CPU ranks it quietly falls
back to DDP (train.py refuses that). FSDP2 itself runs on CPU with gloo, so this launcher lets
accelerate's state say FSDP where it would say MULTI_CPU, and changes nothing else (but for the NaN
batch that NAN_BATCH_OF_RANK plants, see tests/faults.py).
"""

import os
import sys
from pathlib import Path

from accelerate import state
from accelerate.utils import DistributedType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
from faults import plant_nan_batches  # noqa: E402

accelerator_state_init = state.AcceleratorState.__init__


def init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.fsdp_plugin = fsdp_plugin
        # AcceleratorState() copies PartialState's fields each time it is built: change both.
        self.distributed_type = state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


state.AcceleratorState.__init__ = init_with_fsdp_on_cpu

if __name__ == "__main__":
    if planted := os.environ.get("NAN_BATCH_OF_RANK"):  # "<rank>:<batch number>", for the non-finite guard's test
        rank, number = map(int, planted.split(":"))
        if int(os.environ["RANK"]) == rank:
            plant_nan_batches({number})
    train.main(sys.argv[1:])
