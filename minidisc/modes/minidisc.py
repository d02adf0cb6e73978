"""MiniDisc: find the teacher assistant and the student in one trial.

Each iteration trains one student narrowed to every candidate sparsity at once (the
sandwich: one teacher forward, one student forward per candidate, the mean loss, one
backward), tracks the best dev metric per sparsity, and lets the lambda-tradeoff pick the
sparsity to keep. The kept model (densified) teaches the next iteration.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minidisc.compression.schedule import choose_sparsity, tradeoff
from minidisc.compression.sparsity_map import sparsities, sparsity_key
from minidisc.errors import MiniDiscError
from minidisc.modes.common import Context, report_of
from minidisc.modes.distill import objective, teacher_forward
from minidisc.training.loop import Evaluation, fit


def candidates(smap: dict, teacher_sparsity: float, trunc: float, target: float) -> list[float]:
    """Map sparsities >= trunc and >= the teacher's, up to the target (always included):
    sparsities above the target can never be chosen, so they are not trained."""
    lo = max(float(trunc), float(teacher_sparsity))
    found = [s for s in sparsities(smap) if lo <= s <= target]
    return found if target in found else [*found, float(target)]


def sandwich_loss(student: nn.Module, teacher: nn.Module, batch: dict, cands: list[float],
                  loss) -> torch.Tensor:
    """Mean over candidate sparsities of the distillation loss; the teacher runs once."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    t_out = teacher_forward(teacher, inputs)
    losses = []
    for s in cands:
        student.sparsify(s)
        losses.append(loss(student(**inputs, output_hidden_states=True), t_out, batch))
    student.sparsify(None)
    return torch.stack(losses).mean()


def iterate(ctx: Context, teacher: nn.Module, it: int, folder: Path) -> tuple[nn.Module, dict]:
    args = ctx.args
    is_final = it == args.target_iteration
    t_sparsity = float(getattr(teacher.config, "sparsity", 0) or 0)
    cands = candidates(teacher.config.sparsity_map, t_sparsity, args.trunc_sparsity,
                       args.target_sparsity)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    loss = objective(ctx, teacher)
    best = {s: -math.inf for s in cands}
    kept: dict[str, Any] = {}
    ckpt = f"ckpt_iter_{it}"

    def compute_loss(batch):
        return sandwich_loss(student, teacher, ctx.to_device(batch), cands, loss)

    def evaluate(step: int) -> Evaluation:
        now = {}
        for s in cands:
            student.sparsify(s)
            now[s] = ctx.evaluate(student)
            best[s] = max(best[s], now[s][ctx.selection])
        student.sparsify(None)
        chosen = choose_sparsity(best, t_sparsity, args.target_sparsity, args.lam, is_final)

        def keep() -> None:
            ta = copy.deepcopy(student)
            ta.sparsify(chosen)
            ta.densify()
            kept.update(model=ta.eval().requires_grad_(False), chosen=chosen, step=step)
            ctx.save(ta, folder / ckpt)

        dev = {sparsity_key(s): now[s][ctx.selection] for s in cands}
        return Evaluation(tradeoff(best[chosen], chosen, args.lam),
                          {"dev": dev, "chosen": chosen}, keep)

    started = time.perf_counter()
    train = fit(student, ctx.train_loader(), compute_loss, evaluate, args, ctx.rt,
                f"minidisc iter {it}")
    ta = kept["model"]
    record = {
        "iteration": it,
        "teacher_sparsity": t_sparsity,
        "candidates": [sparsity_key(s) for s in cands],
        "best_metric": {sparsity_key(s): best[s] for s in cands},
        "tradeoff": {sparsity_key(s): tradeoff(best[s], s, args.lam) for s in cands
                     if t_sparsity <= s <= args.target_sparsity},
        "chosen": kept["chosen"],
        "saved_at_step": kept["step"],
        "steps": train.steps,
        "wall_time_s": time.perf_counter() - started,
        "history": train.history,
        # the last iteration is the one that reaches the target: its report is the final one
        **ctx.report(ta, folder, ckpt, final=kept["chosen"] == args.target_sparsity),
    }
    return ta, record


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    args = ctx.args
    teacher, teacher_info = ctx.load_teacher()
    target = float(args.target_sparsity)
    ctx.check_specs(teacher, [("sparsity", target)])
    if target <= teacher_info["sparsity"]:
        raise MiniDiscError(f"--target_sparsity {target:g} is not above the teacher's "
                            f"sparsity {teacher_info['sparsity']:g}")
    iterations = []
    for it in range(1, args.target_iteration + 1):
        teacher, record = iterate(ctx, teacher, it, folder)
        iterations.append(record)
        if record["chosen"] == target:
            break
    final = report_of(iterations[-1])
    tas = [r["chosen"] for r in iterations[:-1]]
    return {"teacher": teacher_info, "lam": args.lam, "target_sparsity": target,
            "teacher_assistants": tas, "iterations": iterations, "final": final}
