"""The one training loop every mode uses.

A mode hands it a model, a `train_step(batch, backward)` (task loss, distillation, or the
sandwich) and an `evaluate(step)` that scores the model and says how to save it; the loop owns
the optimiser, schedule, accumulation, clipping, precision, evaluation cadence,
best-checkpoint selection and early stopping.

The loop's whole state is one `FitState` plus the optimiser, scheduler and scaler; `on_state`
receives it after every evaluation (and on Ctrl-C / SIGTERM) so a run can be resumed exactly
where it was: the same data order (the loader's generator state at the start of the epoch
and how many batches were done), the same best score and patience count.

A train step calls `backward` itself, once per loss it computes: the sandwich back-propagates
each candidate's loss as soon as it has it, so only one candidate's graph is alive at a time
(peak memory of one student forward, not of all of them). Each forward and its backward run
inside `with backward.forward(last) as model:`: `model` is what to call (under DDP the
wrapper), and under DDP/FSDP only the last forward of the last accumulated micro-batch
synchronises gradients; the others accumulate locally, so a step costs one all-reduce.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import get_scheduler

from minidisc.config import TrainingConfig
from minidisc.training.reporting import Reporter, flatten
from minidisc.training.runtime import Replica, Runtime
from minidisc.training.state import NumericalError, StopFlag

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What a mode reports at an evaluation: the score to maximise, what it is (the log line
    names it, e.g. "dev acc_and_f1"), and how to keep the model.

    `save` runs on every process when the score is the best so far (each keeps the model in
    memory; only the main process writes files). `scalars` are what `--report_to` shows of
    it (default: the numbers in `metrics`). `stop`: the mode has what it trained for
    (MiniDisc's search once its choice is decided); the training ends here."""

    score: float
    metrics: dict[str, Any] = field(default_factory=dict)
    save: Callable[[], None] | None = None
    name: str = "score"
    scalars: dict[str, float] | None = None
    stop: bool = False


class Backward:
    """What the loop hands a train step: `backward(loss)` back-propagates (scaled for
    accumulation and fp16), `backward.forward(last)` is the context of one forward and its
    backward and yields the model to call."""

    def __init__(self, replica: Replica, scale: Callable[[torch.Tensor], torch.Tensor] | None
                 = None, accum: int = 1, reporter: Reporter | None = None):
        self.replica, self.scale, self.accum = replica, scale, accum
        self.syncs = True  # whether this micro-batch's last backward synchronises (the loop's)
        self.reporter = reporter or Reporter()

    def log(self, tag: str, value: float) -> None:
        """Report a value of this optimiser step (the mean over its micro-batches)."""
        self.reporter.log(tag, value)

    @classmethod
    def plain(cls, model: nn.Module) -> Backward:
        """For a train step run outside the loop (one process, no scaling)."""
        return cls(Replica(model, model))

    def __call__(self, loss: torch.Tensor) -> None:
        loss = loss / self.accum
        (loss if self.scale is None else self.scale(loss)).backward()

    @contextlib.contextmanager
    def forward(self, last: bool = True) -> Iterator[nn.Module]:
        """`last`: whether this is the step's last backward on this batch."""
        with self.replica.sync(self.syncs and last):
            yield self.replica.forward


TrainStep = Callable[[dict, Backward], float]


def single_loss(compute_loss: Callable[[dict, nn.Module], torch.Tensor]) -> TrainStep:
    """A train step for modes with one loss per batch: `compute_loss(batch, model)`."""

    def step(batch: dict, backward: Backward) -> float:
        with backward.forward() as model:
            loss = compute_loss(batch, model)
            backward(loss)
        return loss.item()

    return step


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A collated batch on the training device."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class FitState:
    """Everything about the loop's progress that is not a tensor of the model or optimiser."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of the current epoch already trained on
    epoch_rng: torch.Tensor | None = None  # the loader generator's state at the epoch's start
    best: float = -math.inf
    best_step: int = 0
    stopped_early: bool = False
    # one entry per evaluation: step, that step's training loss, score and metrics
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    eval_time_s: float = 0.0


@dataclass
class FitResult:
    best_score: float
    best_step: int
    steps: int
    wall_time_s: float
    eval_time_s: float
    stopped_early: bool
    history: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Plan:
    """The step budget of one training, as the loop counts it (optimiser steps)."""

    steps_per_epoch: int
    total: int
    patience: int

    @classmethod
    def of(cls, batches: int, cfg: TrainingConfig) -> Plan:
        per_epoch = max(1, math.ceil(batches / cfg.num_grad_accum_steps))
        return cls(per_epoch, max(1, int(per_epoch * cfg.num_train_epochs)),
                   max(1, int(cfg.num_patience_epochs * per_epoch)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or p.numel() == 0:  # a layer narrowed to no heads/neurons
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fit(model: nn.Module, loader: DataLoader, train_step: TrainStep,
        evaluate: Callable[[int], Evaluation], cfg: TrainingConfig, rt: Runtime,
        desc: str = "train", *, resume: dict[str, Any] | None = None,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        stop: StopFlag | None = None, reporter: Reporter | None = None) -> FitResult:
    """Train until the step budget, early stop, or a stop request; `resume` is a dict that
    `on_state` was given earlier (the model, optimiser, ... and the FitState). Under several
    processes `model` is wrapped (DDP) or sharded in place (FSDP) here."""
    reporter = reporter or Reporter()
    accum = cfg.num_grad_accum_steps
    replica = rt.replicate(model)
    plan = Plan.of(len(loader), cfg)
    total, patience = plan.total, plan.patience
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate)
    scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer,
                              num_warmup_steps=int(total * cfg.warmup_proportion),
                              num_training_steps=total)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.fp16)
    params = [p for group in param_groups(model, 0.0) for p in group["params"]]
    st = FitState()
    if resume is not None:
        if "sharded" in resume:  # FSDP: the shards' folder (Runtime.save_sharded)
            rt.load_sharded(model, optimizer, resume["sharded"])
        else:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        st = FitState(**resume["fit"])
    generator = getattr(loader, "generator", None)
    replay = resume is not None and st.epoch_rng is not None and generator is not None

    backward = Backward(replica, scaler.scale, accum, reporter)
    start, wall_before = time.perf_counter(), st.wall_time_s

    def snapshot() -> dict[str, Any]:
        st.wall_time_s = wall_before + time.perf_counter() - start
        # FSDP: the weights and AdamW state are sharded; on_state has each process save its
        weights = ({"sharded": (model, optimizer)} if rt.fsdp else
                   {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
        return {**weights, "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "fit": dataclasses.asdict(st)}

    running = 0.0
    # log lines print above the bar, not through it; a signal waits for the step's end
    deferred = stop.deferred() if stop is not None else contextlib.nullcontext()
    with logging_redirect_tqdm(), tqdm(total=total, initial=st.step, desc=desc,
                                       disable=not rt.is_main, dynamic_ncols=True) as bar, \
            deferred:
        model.train()
        while st.step < total and not st.stopped_early:
            if replay:  # the epoch the state was saved in: same order, skip what was done
                generator.set_state(st.epoch_rng)
                replay = False
            elif generator is not None:
                st.epoch_rng = generator.get_state()
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(st.epoch)
            for i, batch in enumerate(loader):
                if i < st.batches_done:
                    continue
                backward.syncs = (i + 1) % accum == 0 or i + 1 == len(loader)
                try:
                    with rt.autocast():
                        value = train_step(batch, backward)
                except NumericalError as e:  # a step that knows which candidate failed
                    raise NumericalError(f"{e} at step {st.step + 1}") from None
                if not math.isfinite(value):
                    raise NumericalError(f"{desc}: non-finite training loss ({value}) at step "
                                         f"{st.step + 1}")
                running += value / accum
                if not backward.syncs:
                    continue
                scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                # FSDP returns a DTensor: every process gathers it (a collective)
                norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
                lr = scheduler.get_last_lr()[0]  # this step's
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                st.step += 1
                st.batches_done = i + 1
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2e}")
                reporter.step(st.step, {"train/loss": running, "train/lr": lr,
                                        "train/grad_norm": norm})
                step_loss, running = running, 0.0
                if st.step % cfg.log_interval == 0 or st.step == total:
                    tick = time.perf_counter()
                    ev = evaluate(st.step)
                    took = time.perf_counter() - tick
                    st.eval_time_s += took
                    reporter.scalars({"eval/score": ev.score, "eval/time_s": took,
                                      **(flatten(ev.metrics) if ev.scalars is None
                                         else ev.scalars)}, st.step)
                    if not math.isfinite(ev.score):
                        raise NumericalError(f"{desc}: non-finite dev score ({ev.score}) at step "
                                             f"{st.step}")
                    st.history.append({"step": st.step, "loss": step_loss, "score": ev.score,
                                       **ev.metrics})
                    if ev.score > st.best:
                        st.best, st.best_step = ev.score, st.step
                        if ev.save is not None:
                            ev.save()
                    if rt.is_main:
                        logger.info("%s step %d/%d: %s %.4f (best %.4f at step %d)", desc,
                                    st.step, total, ev.name, ev.score, st.best, st.best_step)
                    if st.step - st.best_step >= patience:
                        logger.info("early stop: no better score for %d steps",
                                    st.step - st.best_step)
                        st.stopped_early = True
                    if ev.stop:
                        st.stopped_early = True
                    if on_state is not None:
                        on_state(snapshot())
                if stop is not None and rt.any(bool(stop)):
                    if on_state is not None:
                        on_state(snapshot())
                    raise stop.interrupted(resumable=on_state is not None)
                if st.step >= total or st.stopped_early:
                    break
            else:
                st.epoch, st.batches_done = st.epoch + 1, 0
    rt.barrier()
    st.wall_time_s = wall_before + time.perf_counter() - start
    return FitResult(best_score=st.best, best_step=st.best_step, steps=st.step,
                     wall_time_s=st.wall_time_s, eval_time_s=st.eval_time_s,
                     stopped_early=st.stopped_early, history=st.history)
