"""The one training loop every mode uses.

A mode hands it a model, a `train_step(batch, backward)` (task loss, distillation, or the
sandwich) and an `evaluate(step)` that scores the model and says how to save it; the loop owns
the optimiser, schedule, accumulation, clipping, precision, evaluation cadence,
best-checkpoint selection and early stopping.

A train step calls `backward` itself, once per loss it computes: the sandwich back-propagates
each candidate's loss as soon as it has it, so only one candidate's graph is alive at a time
(peak memory of one student forward, not of all of them).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from minidisc.training.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What a mode reports at an evaluation: the score to maximise and how to keep the model.

    `save` runs on every process when the score is the best so far (each keeps the model in
    memory; only the main process writes files)."""

    score: float
    metrics: dict[str, Any] = field(default_factory=dict)
    save: Callable[[], None] | None = None


Backward = Callable[[torch.Tensor], None]
TrainStep = Callable[[dict, Backward], float]


def single_loss(compute_loss: Callable[[dict], torch.Tensor]) -> TrainStep:
    """A train step for modes with one loss per batch."""

    def step(batch: dict, backward: Backward) -> float:
        loss = compute_loss(batch)
        backward(loss)
        return loss.item()

    return step


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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fit(model: nn.Module, loader: DataLoader, train_step: TrainStep,
        evaluate: Callable[[int], Evaluation], args: argparse.Namespace, rt: Runtime,
        desc: str = "train") -> FitResult:
    accum = args.num_grad_accum_steps
    steps_per_epoch = max(1, math.ceil(len(loader) / accum))
    total = max(1, int(steps_per_epoch * args.num_train_epochs))
    patience = max(1, int(args.num_patience_epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.learning_rate)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                              num_warmup_steps=int(total * args.warmup_proportion),
                              num_training_steps=total)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.fp16)
    params = [p for p in model.parameters() if p.requires_grad]

    def backward(loss: torch.Tensor) -> None:
        scaler.scale(loss / accum).backward()

    step, best, best_step, history, stop = 0, -math.inf, 0, [], False
    start = time.perf_counter()
    eval_time = 0.0
    running = 0.0
    bar = tqdm(total=total, desc=desc, disable=not rt.is_main, dynamic_ncols=True)
    model.train()
    epoch = 0
    while step < total and not stop:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            with rt.autocast():
                running += train_step(batch, backward) / accum
            if (i + 1) % accum and i + 1 != len(loader):
                continue
            scaler.unscale_(optimizer)
            rt.all_reduce_grads(params)
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            running = 0.0
            if step % args.log_interval == 0 or step == total:
                tick = time.perf_counter()
                ev = evaluate(step)
                eval_time += time.perf_counter() - tick
                history.append({"step": step, "score": ev.score, **ev.metrics})
                if ev.score > best:
                    best, best_step = ev.score, step
                    if ev.save is not None:
                        ev.save()
                if rt.is_main:
                    bar.write(f"step {step}: score {ev.score:.4f} (best {best:.4f} at {best_step})")
                if step - best_step >= patience:
                    logger.info("early stop: no better score for %d steps", step - best_step)
                    stop = True
            if step >= total or stop:
                break
        epoch += 1
    bar.close()
    rt.barrier()
    return FitResult(best_score=best, best_step=best_step, steps=step,
                     wall_time_s=time.perf_counter() - start, eval_time_s=eval_time,
                     stopped_early=stop, history=history)
