"""MiniDisc: find the teacher assistant and the student in one trial.

Each iteration trains one student narrowed to every candidate sparsity at once (the
sandwich: one teacher forward, then per candidate one student forward, its share of the mean
loss and its backward), tracks the best dev metric per sparsity, and lets the
lambda-tradeoff pick the sparsity to keep. The kept model (densified) teaches the next
iteration. The target sparsity is trained in every iteration, so the final student is the
best target-sparsity model of the whole trial (by dev metric), not only of the last iteration.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from torch import nn

from minidisc.compression.schedule import choose_sparsity, top_candidate, tradeoff
from minidisc.compression.sparsity_map import sparsities, sparsity_key
from minidisc.compression.students import narrow
from minidisc.config import MiniDiscConfig
from minidisc.errors import MiniDiscError
from minidisc.modes.common import Context
from minidisc.modes.distill import Distiller
from minidisc.training import evaluate as ev
from minidisc.training.loop import Backward, Evaluation, TrainStep
from minidisc.training.runtime import copy_model
from minidisc.training.state import NumericalError

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


def sandwich_step(student: nn.Module, distiller: Distiller, cands: list[float]) -> TrainStep:
    """A train step: teacher once, then each candidate's forward, loss and backward in turn,
    so one candidate's graph is alive at a time; gradients synchronise (several processes)
    in the last candidate's backward only. Returns the mean loss; reports each candidate's."""

    def step(batch: dict, backward: Backward) -> float:
        b, inputs, t_out = distiller.split(batch)
        total = 0.0
        for i, s in enumerate(cands):
            student.sparsify(s)  # the model itself; the forward goes through the engine
            with backward.forward(last=i == len(cands) - 1) as forward:
                loss = distiller.loss(forward, inputs, t_out, b) / len(cands)
                value = loss.item()
                if not math.isfinite(value):
                    student.sparsify(None)
                    raise NumericalError(f"minidisc: non-finite training loss ({value}) for "
                                         f"candidate {s:g}S")
                backward(loss)
            backward.log(f"train/loss/{s:g}S", value * len(cands))
            total += value
        student.sparsify(None)
        return total

    return step


def choice_line(it: int, chosen: float, best: dict[str, float], t_sparsity: float,
                target: float, lam: float, is_final: bool, metric: str,
                above_target: bool = False) -> str:
    """One line per iteration: the sparsity kept and why (`best`: best dev metric per
    candidate sparsity key; `metric` names it, e.g. "dev acc_and_f1")."""

    def terms(s: float) -> str:
        m = best[sparsity_key(s)]
        return f"tradeoff {tradeoff(m, s, lam):.4f}: {metric} {m:.4f} + {lam:g}·{s / 100:.2f}"

    if chosen != target:
        return (f"iteration {it}: chose {chosen:g}S as TA ({terms(chosen)}; the target "
                f"{target:g}S: {terms(target)})")
    if is_final:
        reason = "it is the final iteration"
    else:
        top = top_candidate(best, t_sparsity, target, lam, above_target)
        reason = (f"{top:g}S, above the target, has the highest tradeoff ({terms(top)}) and "
                  "the target takes its place" if top > target
                  else f"the target's tradeoff is the highest ({terms(target)})")
    return f"iteration {it}: chose the target {target:g}S: no TA, because {reason}"


class BestTarget:
    """The best target-sparsity model of the whole trial, by dev metric: in memory, and on
    disk in the staging folder (so a --resume still has it)."""

    DIR = ".best_target"

    def __init__(self, ctx: Context, folder: Path):
        self.ctx, self.path = ctx, folder / self.DIR
        self.info = ctx.progress.setdefault("best_target", {"score": -math.inf})
        self.model: nn.Module | None = None
        if "iteration" in self.info and (self.path / "config.json").is_file():
            self.model = ctx.load(self.path, "--resume").eval().requires_grad_(False)

    def offer(self, student: nn.Module, target: float, score: float, it: int,
              step: int) -> None:
        if score > self.info["score"]:
            self.info.update(score=score, iteration=it, step=step)
            self.model = narrow(student, target).eval().requires_grad_(False)
            self.ctx.save(self.model, self.path)

    def is_from(self, it: int, step: int | None = None) -> bool:
        return self.info.get("iteration") == it and step in (None, self.info.get("step"))


def ends(chosen: float, target: float, is_final: bool, args: MiniDiscConfig) -> bool:
    """Whether an iteration that kept `chosen` ends the trial: the final one does; a search
    that kept the target does unless --search_epochs shortened it (its target model had less
    training than a student gets, so the final iteration still trains one)."""
    return is_final or (chosen == target and args.search_epochs is None)


def iterate(ctx: Context, teacher: nn.Module, it: int, folder: Path, best_target: BestTarget,
            is_final: bool) -> tuple[nn.Module, dict]:
    args = ctx.cfg.minidisc
    target = float(args.target_sparsity)
    # a search iteration only has to rank the candidates; the final one trains the student
    epochs = None if is_final else args.search_epochs
    t_sparsity = float(getattr(teacher.config, "sparsity", 0) or 0)
    cands = candidates(teacher.config.sparsity_map, t_sparsity, args.trunc_sparsity, target,
                       args.candidates_above_target)
    if is_final and args.final_sandwich == "target":
        cands = [target]  # plain distillation from the TA, like MaxiDisc's last stage
    # On the final iteration the choice is the target whatever the others score.
    scored = [target] if is_final else cands
    every = args.candidate_eval_every
    metric = f"{ctx.dev[0].name} {ctx.selection}"
    if ctx.rt.is_main:
        logger.info("iteration %d of at most %d: teacher %gS; trains %s for %g epochs; scores "
                    "%s", it, args.target_iteration, t_sparsity,
                    " ".join(f"{s:g}S" for s in cands), epochs or ctx.cfg.training.num_train_epochs,
                    "only the target (final iteration)" if is_final
                    else "each of them" if every == 1
                    else f"the target at every evaluation, all at every {every}th")
    student = copy_model(teacher).train().requires_grad_(True)
    distiller = Distiller(ctx, teacher)
    ckpt = f"ckpt_iter_{it}"
    k = args.sandwich_size
    rng = random.Random(ctx.cfg.seed + it)
    # what this iteration has decided so far; saved with every state, so --resume keeps it
    state = ctx.progress.get("iteration")
    if state is None or state["it"] != it:
        state = {"it": it, "best": {sparsity_key(s): -math.inf for s in scored}}
        ctx.progress["iteration"] = state
    if "rng" in state:
        rng.setstate((3, tuple(state["rng"]), None))
    best = state["best"]
    kept: dict[str, Any] = {}
    full_step = sandwich_step(student, distiller, cands)

    def train_step(batch, backward) -> float:
        if k is None:
            return full_step(batch, backward)
        picked = sample_sandwich(cands, k, rng)
        state["rng"] = list(rng.getstate()[1])
        return sandwich_step(student, distiller, picked)(batch, backward)

    total = ctx.plan(epochs).total

    def scores_all(step: int) -> bool:
        """Whether this evaluation scores every candidate: the first, every `every`-th and the
        last do (counted from the step, so a --resume keeps the same cadence)."""
        return (step // ctx.cfg.training.log_interval - 1) % every == 0 or step >= total

    def evaluate(step: int) -> Evaluation:
        now = {}
        full = is_final or scores_all(step)
        for s in scored if full else [target]:
            student.sparsify(s)
            now[s] = ctx.evaluate(student)[ctx.selection]
            if not math.isfinite(now[s]):
                raise NumericalError(f"minidisc iteration {it}: non-finite dev {ctx.selection} "
                                     f"at step {step} for candidate {s:g}S")
            if full:  # the target's best too: every candidate's over the same evaluations
                best[sparsity_key(s)] = max(best[sparsity_key(s)], now[s])
        student.sparsify(None)
        best_target.offer(student, target, now[target], it, step)
        chosen = choose_sparsity(best, t_sparsity, target, args.lam, is_final,
                                 args.candidates_above_target)

        def keep() -> None:
            reuse = chosen == target and best_target.is_from(it, step)
            ta = best_target.model if reuse else narrow(student, chosen)
            kept["model"] = ta.eval().requires_grad_(False)
            state.update(chosen=chosen, step=step)
            ctx.save(ta, folder / ckpt)

        dev = {sparsity_key(s): v for s, v in now.items()}
        score = tradeoff(best[sparsity_key(chosen)], chosen, args.lam)
        trades = {k: tradeoff(v, float(k), args.lam) for k, v in best.items()}
        if ctx.rt.is_main:
            logger.info("iteration %d step %d: %s %s; tradeoff (best %s + %g·s/100) %s; "
                        "chose %gS", it, step, metric,
                        " ".join(f"{s}S={v:.4f}" for s, v in dev.items()), metric, args.lam,
                        " ".join(f"{s}S={v:.4f}" for s, v in trades.items()), chosen)
        scalars = {**{f"dev/{ctx.selection}/{s}S": v for s, v in dev.items()},
                   **{f"tradeoff/{s}S": v for s, v in trades.items()}, "chosen": chosen}
        return Evaluation(score, {"dev": dev, "chosen": chosen}, keep,
                          name=f"{chosen:g}S tradeoff", scalars=scalars)

    started = time.perf_counter()
    train = ctx.run_fit(student, train_step, evaluate, f"minidisc iter {it}",
                        stage=f"minidisc iteration {it}", epochs=epochs)
    ta = kept.get("model") or ctx.load(folder / ckpt, "--resume").eval().requires_grad_(False)
    chosen = float(state["chosen"])
    line = choice_line(it, chosen, best, t_sparsity, target, args.lam, is_final, metric,
                       args.candidates_above_target)
    if ctx.rt.is_main:
        logger.info("%s", line)
    ctx.reporter.scalars({"minidisc/chosen_sparsity": chosen}, it)
    ctx.reporter.text("minidisc/choice", line, it)
    # the report of the model that ends the trial carries the test metric and predictions
    ends_trial = ends(chosen, target, is_final, args) and best_target.is_from(it)
    record = {
        "iteration": it,
        "final": is_final,
        "epochs": epochs or ctx.cfg.training.num_train_epochs,
        "teacher_sparsity": t_sparsity,
        "candidates": [sparsity_key(s) for s in cands],
        "best_metric": dict(best),
        "tradeoff": {sparsity_key(s): tradeoff(best[sparsity_key(s)], s, args.lam)
                     for s in scored if t_sparsity <= s <= target},
        "chosen": chosen,
        "saved_at_step": state["step"],
        "steps": train.steps,
        "wall_time_s": time.perf_counter() - started,
        "eval_time_s": train.eval_time_s,
        "history": train.history,
        **ctx.report(ta, folder, ckpt, final=ends_trial),
    }
    return ta, record


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    args = ctx.cfg.minidisc
    teacher, teacher_info = ctx.load_teacher()
    target = float(args.target_sparsity)
    ctx.check_specs(teacher, [("sparsity", target)])
    if target <= teacher_info["sparsity"]:
        raise MiniDiscError(f"--target_sparsity {target:g} is not above the teacher's "
                            f"sparsity {teacher_info['sparsity']:g}")
    if ctx.rt.is_main:
        first = candidates(teacher.config.sparsity_map, teacher_info["sparsity"],
                           args.trunc_sparsity, target, args.candidates_above_target)
        logger.info("minidisc: at most %d iterations to %gS; each keeps the candidate with the "
                    "highest tradeoff (best %s %s + %g·s/100) as the next teacher (the last "
                    "keeps the target); iteration 1 candidates: %s", args.target_iteration,
                    target, ctx.dev[0].name, ctx.selection, args.lam,
                    " ".join(f"{s:g}S" for s in first))
    iterations = ctx.progress.setdefault("iterations", [])  # finished ones survive --resume
    tas = [r for r in iterations if r["chosen"] != target]
    if tas:  # the last TA kept teaches the next iteration
        teacher = ctx.load(folder / tas[-1]["path"], "--resume").eval()
        teacher.requires_grad_(False)
    best_target = BestTarget(ctx, folder)
    while not iterations or not ends(iterations[-1]["chosen"], target,
                                     iterations[-1].get("final", False), args):
        it = len(iterations) + 1
        # after a search that kept the target, only the final iteration is left to run
        is_final = it == args.target_iteration or (
            bool(iterations) and iterations[-1]["chosen"] == target)
        ta, record = iterate(ctx, teacher, it, folder, best_target, is_final)
        iterations.append(record)
        if record["chosen"] != target:
            teacher = ta
        elif not is_final and ctx.rt.is_main:
            logger.info("the final iteration distils the target from the same teacher (the "
                        "search ran %g epochs)", record["epochs"])
    last = iterations[-1]
    if best_target.is_from(last["iteration"]) or best_target.model is None:
        final = ctx.report_of(last)  # the last iteration's checkpoint is the student
    else:
        # an earlier iteration's sandwich trained a better target-sparsity model
        path = f"student_iter_{best_target.info['iteration']}"
        if ctx.rt.is_main:
            os.replace(best_target.path, folder / path)
        logger.info("final student: the %g%% model of iteration %d (dev %s %.4f)", target,
                    best_target.info["iteration"], ctx.selection, best_target.info["score"])
        final = ctx.report_of(ctx.report(best_target.model, folder, path, final=True))
    if ctx.rt.is_main:
        shutil.rmtree(best_target.path, ignore_errors=True)
    tas = [r["chosen"] for r in iterations if r["chosen"] != target]
    out = {"teacher": teacher_info, "lam": args.lam, "target_sparsity": target,
           "teacher_assistants": tas, "iterations": iterations,
           "final_from_iteration": best_target.info.get("iteration", last["iteration"]),
           "final": final}
    dev = ctx.dev[0]
    majority = ev.majority_class(ctx.task, dev)
    if majority:  # what answering one class whatever the input scores: the report's floor
        const = [ctx.task.labels.index(majority[0])] * len(dev.examples)
        out["majority_class"] = {"label": majority[0], dev.name: ev.score(ctx.task, dev, const)}
    return out
