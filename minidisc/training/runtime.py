"""Device, distributed (torchrun) and precision setup, decided once per run."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    fp16: bool = False
    bf16: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.fp16:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def all_reduce_grads(self, params) -> None:
        """Average gradients over processes.

        Done by hand instead of wrapping in DDP because the sandwich runs several forwards of
        one model before a single backward, which DDP's reducer does not allow.
        """
        if not self.distributed:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.world_size)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def setup(use_cpu: bool, use_fp16: bool, local_rank: int = -1, use_bf16: bool = False) -> Runtime:
    """CUDA when present unless --use_cpu; torchrun's env (WORLD_SIZE, LOCAL_RANK) when set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", local_rank if local_rank >= 0 else 0))
    cuda = torch.cuda.is_available() and not use_cpu
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if use_fp16 and not cuda:
        logger.warning("--use_fp16 needs CUDA; running in fp32 on the CPU")
    return Runtime(device=device, rank=rank, world_size=world, fp16=use_fp16 and cuda,
                   bf16=use_bf16)
