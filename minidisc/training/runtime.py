"""Device, distributed (torchrun) and precision setup, decided once per run.

Several processes train one model with PyTorch's own engines: DDP (a replica per device,
gradients all-reduced in the backward) or FSDP2 (`fully_shard`: parameters, gradients and
optimiser state sharded over the processes, for models that do not fit one device). Both are
used through `torch.distributed` directly; torchrun's environment (WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR/PORT, multi-node rendezvous included) is all they read.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    fp16: bool = False
    bf16: bool = False
    strategy: str = "ddp"  # how several processes train one model: ddp or fsdp

    @property
    def fsdp(self) -> bool:
        return self.distributed and self.strategy == "fsdp"

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

    def replicate(self, model: nn.Module) -> Replica:
        """The trained model as the engine sees it (DDP wrapper, FSDP-sharded, or itself)."""
        if not self.distributed:
            return Replica(model, model)
        if self.fsdp:
            shard(model)
            return Replica(model, model, fsdp=True)
        # find_unused_parameters: a layer narrowed to zero heads skips its attention weights
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                  find_unused_parameters=True)
        return Replica(model, ddp)

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The whole model's weights; of a sharded model gathered onto rank 0's CPU (a
        collective: every process calls it; the others get an empty dict), else its own."""
        if not is_sharded(model):
            return model.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                   cpu_offload=True))

    def load_full_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """The inverse of `full_state_dict`: into a sharded model rank 0's state is scattered,
        each tensor as the model holds it (the empty weights of a layer narrowed to nothing
        stay plain tensors; torch's set_model_state_dict takes a model of only DTensors)."""
        if not is_sharded(model):
            model.load_state_dict(state)
            return
        from torch.distributed.tensor import DTensor, distribute_tensor

        local = {}
        for name, held in model.state_dict().items():
            if self.is_main:
                full = state[name].to(held.device, held.dtype)
            else:
                full = torch.empty(held.shape, device=held.device, dtype=held.dtype)
            if isinstance(held, DTensor):
                full = distribute_tensor(full, held.device_mesh, held.placements)
            elif full.numel():
                dist.broadcast(full, src=0)
            local[name] = full
        model.load_state_dict(local)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def save_sharded(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                     folder: Path) -> None:
        """FSDP: every process writes its shards of the model and AdamW state into `folder`
        with torch.distributed.checkpoint (a collective), replacing it only once complete."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(model, optimizer)
        tmp = folder.with_name(f".{folder.name}.tmp")
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.barrier()
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp)
        self.barrier()
        if self.is_main:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        self.barrier()

    def load_sharded(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                     folder: Path) -> None:
        """The inverse of `save_sharded`, each process reading its own shards."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=folder)
        set_state_dict(model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])

    def gather(self, obj: object) -> list:
        """Every process's `obj`, in rank order, on every process (a collective)."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """Whether any process says `flag` (a collective): a stop request reaches one rank
        before another, and they must all save and stop at the same step."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def model_inputs(batch: dict[str, torch.Tensor], rt: Runtime) -> dict[str, torch.Tensor]:
    """A batch's model inputs (everything but the labels) on the run's device."""
    return {k: v.to(rt.device, non_blocking=True) for k, v in batch.items() if k != "labels"}


@dataclass
class Replica:
    """One trained model under this run's engine: `module` is the model itself (narrow it,
    save it), `forward` is what a train step calls (the DDP wrapper: its forward arms the
    gradient all-reduce), `sync(on)` says whether the next backward synchronises gradients."""

    module: nn.Module
    forward: nn.Module
    fsdp: bool = False

    @contextlib.contextmanager
    def sync(self, on: bool) -> Iterator[None]:
        """Forward and backward inside: with `on` False gradients only accumulate locally
        (every candidate but the last, every micro-batch but the last)."""
        if on or (self.forward is self.module and not self.fsdp):
            yield
        elif self.fsdp:
            self.module.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.module.set_requires_gradient_sync(True)
        else:
            with self.forward.no_sync():
                yield


def shard(model: nn.Module) -> None:
    """FSDP2 in place: each encoder layer is one unit (gathered for its own forward and
    backward only), the root holds the rest (embeddings, pooler, head). The empty weights of
    a layer narrowed to no heads or neurons stay unsharded (an empty tensor cannot be split).
    A model sharded already (a trained student that teaches the next stage) stays as it is."""
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        return
    empty = {p for p in model.parameters() if p.numel() == 0}
    for layer in encoder_layers(model):
        fully_shard(layer, ignored_params=empty)
    fully_shard(model, ignored_params=empty)


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def copy_model(model: nn.Module) -> nn.Module:
    """An unsharded copy on the model's device. A sharded model cannot be deep-copied: every
    process gathers its whole weights (a collective) into a fresh model of the same class and
    config, built with the RNG forked so that the copy draws no random numbers (as a
    deepcopy draws none: both engines then train on the same random stream)."""
    if not is_sharded(model):
        return copy.deepcopy(model)
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )
    from torch.distributed.fsdp import FSDPModule

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
    with torch.random.fork_rng(devices=[]):
        fresh = cls(copy.deepcopy(model.config))
    param = next(iter(state.values()))
    fresh.to(param.device, param.dtype).load_state_dict(state)
    return fresh.train(model.training)


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model: the children of its ModuleLists (encoder.layer for
    BERT, block for T5), the units FSDP shards and gradient checkpointing recomputes."""
    return [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def setup(use_cpu: bool, use_fp16: bool, local_rank: int = -1, use_bf16: bool = False,
          strategy: str = "ddp") -> Runtime:
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
                   bf16=use_bf16, strategy=strategy)
