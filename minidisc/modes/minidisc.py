"""MiniDisc: find the teacher assistant and the student in one trial.

Each iteration trains one student narrowed to every candidate sparsity at once (the
sandwich: one teacher forward, then per candidate one student forward, its share of the mean
loss and its backward), tracks the best dev metric per sparsity, and lets the
lambda-tradeoff pick the sparsity to keep. The kept model (densified) teaches the next
iteration. The target sparsity is trained in every iteration, so the final student is the
best target-sparsity model of the whole trial (by dev metric), not only of the last iteration.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

from torch import nn

from minidisc.compression.schedule import choose_sparsity, tradeoff
from minidisc.compression.sparsity_map import sparsities, sparsity_key
from minidisc.compression.students import narrow
from minidisc.errors import MiniDiscError
from minidisc.modes.common import Context, report_of
from minidisc.modes.distill import Distiller
from minidisc.training.loop import Evaluation, fit

logger = logging.getLogger(__name__)


def candidates(smap: dict, teacher_sparsity: float, trunc: float, target: float,
               above_target: bool = False) -> list[float]:
    """Map sparsities >= trunc and >= the teacher's, up to the target (always included).

    Sparsities above the target are trained only with `above_target` (the reference's
    sandwich): they shape the shared weights, but a choice above the target falls back to it.
    """
    lo = max(float(trunc), float(teacher_sparsity))
    found = [s for s in sparsities(smap) if lo <= s and (above_target or s <= target)]
    return sorted(found if target in found else [*found, float(target)])


def sample_sandwich(cands: list[float], k: int | None, rng: random.Random) -> list[float]:
    """The smallest and the largest candidate plus `k` others at random (None: all), the
    sandwich rule of slimmable networks: the extremes bound every width between them."""
    if k is None or len(cands) <= k + 2:
        return cands
    middle = rng.sample(cands[1:-1], k)
    return [cands[0], *sorted(middle), cands[-1]]


def sandwich_step(student: nn.Module, distiller: Distiller, cands: list[float]):
    """A train step: teacher once, then each candidate's forward, loss and backward in turn,
    so one candidate's graph is alive at a time. Returns the mean loss."""

    def step(batch: dict, backward) -> float:
        b, inputs, t_out = distiller.split(batch)
        total = 0.0
        for s in cands:
            student.sparsify(s)
            loss = distiller.loss(student, inputs, t_out, b) / len(cands)
            backward(loss)
            total += loss.item()
        student.sparsify(None)
        return total

    return step


def iterate(ctx: Context, teacher: nn.Module, it: int, folder: Path,
            best_target: dict[str, Any]) -> tuple[nn.Module, dict]:
    args = ctx.args
    target = float(args.target_sparsity)
    is_final = it == args.target_iteration
    t_sparsity = float(getattr(teacher.config, "sparsity", 0) or 0)
    cands = candidates(teacher.config.sparsity_map, t_sparsity, args.trunc_sparsity, target,
                       args.candidates_above_target)
    if is_final and args.final_sandwich == "target":
        cands = [target]  # plain distillation from the TA, like MaxiDisc's last stage
    # On the final iteration the choice is the target whatever the others score.
    scored = [target] if is_final else cands
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    distiller = Distiller(ctx, teacher)
    best = {s: -math.inf for s in scored}
    kept: dict[str, Any] = {}
    ckpt = f"ckpt_iter_{it}"
    k = None if args.sandwich_k == "all" else int(args.sandwich_k)
    rng = random.Random(args.seed + it)
    full_step = sandwich_step(student, distiller, cands)

    def train_step(batch, backward) -> float:
        if k is None:
            return full_step(batch, backward)
        return sandwich_step(student, distiller, sample_sandwich(cands, k, rng))(batch, backward)

    def evaluate(step: int) -> Evaluation:
        now = {}
        for s in scored:
            student.sparsify(s)
            now[s] = ctx.evaluate(student)
            best[s] = max(best[s], now[s][ctx.selection])
        student.sparsify(None)
        if now[target][ctx.selection] > best_target["score"]:
            best_target.update(score=now[target][ctx.selection], iteration=it, step=step,
                               model=narrow(student, target).eval().requires_grad_(False))
        chosen = choose_sparsity(best, t_sparsity, target, args.lam, is_final,
                                 args.candidates_above_target)

        def keep() -> None:
            same = chosen == target and best_target.get("step") == step and (
                best_target.get("iteration") == it)
            ta = best_target["model"] if same else narrow(student, chosen)
            kept.update(model=ta.eval().requires_grad_(False), chosen=chosen, step=step)
            ctx.save(ta, folder / ckpt)

        dev = {sparsity_key(s): now[s][ctx.selection] for s in scored}
        score = tradeoff(best[chosen], chosen, args.lam)
        if ctx.rt.is_main:
            logger.info("iteration %d step %d: dev %s %s; chose %gS (tradeoff %.4f)", it, step,
                        ctx.selection, " ".join(f"{s}S={v:.4f}" for s, v in dev.items()),
                        chosen, score)
        return Evaluation(score, {"dev": dev, "chosen": chosen}, keep)

    started = time.perf_counter()
    train = fit(student, ctx.train_loader(), train_step, evaluate, args, ctx.rt,
                f"minidisc iter {it}")
    ta = kept["model"]
    # the report of the model that ends the trial carries the test metric and predictions
    ends_trial = kept["chosen"] == target and best_target.get("iteration") == it
    record = {
        "iteration": it,
        "teacher_sparsity": t_sparsity,
        "candidates": [sparsity_key(s) for s in cands],
        "best_metric": {sparsity_key(s): best[s] for s in scored},
        "tradeoff": {sparsity_key(s): tradeoff(best[s], s, args.lam) for s in scored
                     if t_sparsity <= s <= target},
        "chosen": kept["chosen"],
        "saved_at_step": kept["step"],
        "steps": train.steps,
        "wall_time_s": time.perf_counter() - started,
        "eval_time_s": train.eval_time_s,
        "history": train.history,
        **ctx.report(ta, folder, ckpt, final=ends_trial),
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
    best_target: dict[str, Any] = {"score": -math.inf}
    for it in range(1, args.target_iteration + 1):
        teacher, record = iterate(ctx, teacher, it, folder, best_target)
        iterations.append(record)
        if record["chosen"] == target:
            break
    last = iterations[-1]
    if best_target.get("iteration", last["iteration"]) == last["iteration"]:
        final = report_of(last)  # the last iteration's checkpoint is the student
    else:
        # an earlier iteration's sandwich trained a better target-sparsity model
        path = f"student_iter_{best_target['iteration']}"
        ctx.save(best_target["model"], folder / path)
        logger.info("final student: the %g%% model of iteration %d (dev %s %.4f)", target,
                    best_target["iteration"], ctx.selection, best_target["score"])
        final = report_of(ctx.report(best_target["model"], folder, path, final=True))
    tas = [r["chosen"] for r in iterations if r["chosen"] != target]
    return {"teacher": teacher_info, "lam": args.lam, "target_sparsity": target,
            "teacher_assistants": tas, "iterations": iterations,
            "final_from_iteration": best_target.get("iteration", last["iteration"]),
            "final": final}
