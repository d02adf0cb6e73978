"""MiniDisc: find the teacher assistant and the student in one trial.

Each iteration trains one student narrowed to every candidate sparsity at once (the
sandwich: one teacher forward, then per candidate one student forward, its share of the mean
loss and its backward), tracks the best score per sparsity (the selection metric, or another
--tradeoff rule's term; on dev or on the --selection_split examples), and lets the
lambda-tradeoff pick the sparsity to keep (with --choice_confidence only a TA that beats the
target under a paired bootstrap). The kept model (densified) teaches the next iteration. The
target sparsity is trained in every iteration, so the final student is the best
target-sparsity model of the whole trial (by selection metric), not only of the last one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from minidisc.compression import schedule
from minidisc.compression.schedule import (
    after_line,
    candidates,
    choice_line,
    choose_sparsity,
    decision_status,
    ends,
    sample_sandwich,
    tradeoff,
)
from minidisc.compression.sparsity_map import sparsity_key
from minidisc.compression.students import narrow
from minidisc.errors import MiniDiscError
from minidisc.modes.common import Context
from minidisc.modes.distill import Distiller, distiller_for
from minidisc.training import evaluate as ev
from minidisc.training.loop import Backward, Evaluation, TrainStep
from minidisc.training.runtime import copy_model
from minidisc.training.state import NumericalError

logger = logging.getLogger(__name__)


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


def term_name(ctx: Context) -> str:
    """What the tradeoff adds lam*s/100 to, for log lines (e.g. "selection acc")."""
    split, rule = ctx.evaluator.select_split.name, ctx.cfg.minidisc.tradeoff
    if rule == "likelihood":
        return f"{split} mean log-likelihood"
    return f"{'normalized ' * (rule == 'normalized')}{split} {ctx.evaluator.selection}"


class BestTarget:
    """The best target-sparsity model of the whole trial, by selection metric: in memory, and on
    disk in the staging folder (so a --resume still has it)."""

    DIR = ".best_target"

    def __init__(self, ctx: Context, folder: Path):
        self.ctx, self.path = ctx, folder / self.DIR
        self.info = ctx.resumable.progress.setdefault("best_target", {"score": -math.inf})
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


@dataclass
class IterationState:
    """What one iteration has decided so far; saved with every state (as `to_dict`), so a
    --resume keeps it: per candidate the best performance term (--tradeoff) and the selection
    metric there, the per-example outputs behind them (--choice_confidence), the floor and
    the teacher's metric the rule measures against, what is kept (sparsity, step, the
    tradeoff it was kept with) and the sandwich sampler's RNG state."""

    it: int
    best: dict[str, float]  # candidate sparsity key -> best performance term so far
    best_metric: dict[str, float]  # the selection metric where the term was best
    outputs: dict[str, dict] = field(default_factory=dict)  # key -> {"preds", "loglik"}
    floor: float | None = None  # a constant prediction's metric on the selection data
    teacher_metric: float | None = None  # the current teacher's (--tradeoff normalized)
    chosen: float | None = None  # the sparsity kept so far
    step: int | None = None  # the step it was kept at
    kept_score: float | None = None  # the tradeoff of the best evaluation so far
    kept_at: float | None = None  # the sparsity chosen at that evaluation
    decision: dict[str, Any] | None = None  # the latest --choice_confidence decision
    rng: list[int] | None = None  # random.Random's internal state (--sandwich_k K)

    def to_dict(self) -> dict[str, Any]:
        """The fields set so far, sharing their dicts with the state (no copy: this runs at
        every sandwich step; the state file serializes it when it is written)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> IterationState:
        return cls(**saved)


class Evidence:
    """What the choice of one iteration rests on (kept in its IterationState): per candidate
    the best performance term over the iteration's evaluations, the selection metric there,
    and (for --choice_confidence) the per-example outputs behind it."""

    def __init__(self, ctx: Context, teacher: nn.Module, state: IterationState):
        m, evaluator = ctx.cfg.minidisc, ctx.evaluator
        self.rule, self.confidence, self.lam = m.tradeoff, m.choice_confidence, m.lam
        self.seed = ctx.cfg.seed + state.it
        split, selection = evaluator.select_split, evaluator.selection
        golds, metric = ev.golds_and_metric(ctx.task, split, selection)
        if state.floor is None:
            state.floor = ev.floor_score(ctx.task, split, selection)
            if self.rule == "normalized":
                state.teacher_metric = evaluator.evaluate_outputs(teacher)[0][selection]
        teacher_metric = state.floor if state.teacher_metric is None else state.teacher_metric
        self.sel = schedule.Selection(golds, metric, state.floor, teacher_metric)
        self.state = state

    def term(self, metric: float, out: ev.Outputs) -> float:
        if self.rule == "likelihood":
            return float(sum(out.loglik) / len(out.loglik))
        if self.rule == "normalized":
            return schedule.normalize(metric, self.sel.floor, self.sel.teacher)
        return metric

    def offer(self, s: float, metric: float, out: ev.Outputs) -> None:
        """A candidate's evaluation: kept where its term is the best of the iteration so far."""
        key, term = sparsity_key(s), self.term(metric, out)
        if term > self.state.best[key]:
            self.state.best[key], self.state.best_metric[key] = term, metric
            if self.confidence is not None:
                self.state.outputs[key] = {"preds": out.preds, "loglik": out.loglik}

    def decide(self, t_sparsity: float, target: float, kept: float | None) -> schedule.Decision:
        """The noise-aware choice among the candidates up to the target. A TA is kept only
        when it is the one whose checkpoint the iteration kept (`kept`, the tradeoff's
        argmax); otherwise (a rare bootstrap that disagrees with the point estimate) the
        choice is left undecided."""
        best, outputs = self.state.best, self.state.outputs
        trades = {float(k): tradeoff(v, float(k), self.lam) for k, v in best.items()
                  if t_sparsity <= float(k) <= target and k in outputs}
        outs = {float(k): schedule.Outputs(**outputs[sparsity_key(k)]) for k in trades}
        floor = schedule.on_floor(self.sel, outs.values())

        def probability(ta: float) -> float:
            return schedule.paired_bootstrap(self.rule, self.sel, outs[ta], ta, outs[target],
                                             target, self.lam, seed=self.seed)

        d = schedule.decide(trades, target, self.confidence, probability, floor)
        if d.state == "ta" and d.chosen != kept:
            d = dataclasses.replace(d, chosen=target, state="undecided")
        return d


class Iteration:
    """One MiniDisc iteration: a sandwich of the candidates distilled from `teacher`, scored
    at every evaluation, the tradeoff's choice kept (saved as `ckpt_iter_<it>`)."""

    def __init__(self, ctx: Context, teacher: nn.Module, it: int, folder: Path,
                 best_target: BestTarget, is_final: bool):
        m = ctx.cfg.minidisc
        self.ctx, self.m, self.it, self.folder = ctx, m, it, folder
        self.best_target, self.is_final = best_target, is_final
        self.target = float(m.target_sparsity)
        # a search iteration only has to rank the candidates; the final one trains the
        # student. Under --choice_confidence a search may train on past --search_epochs until
        # its choice is decided: its schedule spans the full budget, and it stops once decided.
        self.confident = m.choice_confidence is not None and not is_final
        self.search_epochs = None if is_final else m.search_epochs
        self.epochs = None if self.confident else self.search_epochs
        self.t_sparsity = float(getattr(teacher.config, "sparsity", 0) or 0)
        cands = candidates(teacher.config.sparsity_map, self.t_sparsity, m.trunc_sparsity,
                           self.target, m.candidates_above_target)
        if is_final and m.final_sandwich == "target":
            cands = [self.target]  # plain distillation from the TA, like MaxiDisc's last stage
        self.cands = cands
        # On the final iteration the choice is the target whatever the others score.
        self.scored = [self.target] if is_final else cands
        self.metric = term_name(ctx)
        self.student = copy_model(teacher).train().requires_grad_(True)
        self.distiller = distiller_for(ctx, teacher)
        self.ckpt = f"ckpt_iter_{it}"
        self.rng = random.Random(ctx.cfg.seed + it)
        saved = ctx.resumable.progress.get("iteration")
        if saved and saved["it"] == it:
            self.state = IterationState.from_dict(saved)
        else:
            self.state = IterationState(it, {sparsity_key(s): -math.inf for s in self.scored},
                                        {sparsity_key(s): -math.inf for s in self.scored})
        if self.state.rng is not None:
            self.rng.setstate((3, tuple(self.state.rng), None))
        self.evidence = Evidence(ctx, teacher, self.state)
        self._save()
        self.kept: nn.Module | None = None
        self.full_step = sandwich_step(self.student, self.distiller, cands)
        self.total = ctx.plan(self.epochs).total
        self.decide_from = ctx.plan(self.search_epochs).total  # the search's own budget

    def _save(self) -> None:
        """Put the state where the run's state file takes it from (every evaluation)."""
        self.ctx.resumable.progress["iteration"] = self.state.to_dict()

    def train_step(self, batch: dict, backward: Backward) -> float:
        k = self.m.sandwich_size
        if k is None:
            return self.full_step(batch, backward)
        picked = sample_sandwich(self.cands, k, self.rng)
        self.state.rng = list(self.rng.getstate()[1])
        self._save()
        return sandwich_step(self.student, self.distiller, picked)(batch, backward)

    def scores_all(self, step: int) -> bool:
        """Whether this evaluation scores every candidate: the first, every N-th and the last
        do (counted from the step, so a --resume keeps the same cadence)."""
        every = self.m.candidate_eval_every
        return ((step // self.ctx.cfg.training.log_interval - 1) % every == 0
                or step >= self.total)

    def decision(self, step: int, kept_at: float | None) -> dict[str, Any]:
        """The --choice_confidence decision now, as recorded (state and results.json)."""
        d = self.evidence.decide(self.t_sparsity, self.target, kept_at)
        out = {**dataclasses.asdict(d), "confidence": self.m.choice_confidence, "step": step,
               "samples": schedule.BOOTSTRAP_SAMPLES}
        self.state.decision = out
        return out

    def evaluate(self, step: int) -> Evaluation:
        ctx, state, target, lam = self.ctx, self.state, self.target, self.m.lam
        best, evaluator = state.best, ctx.evaluator
        selection, split = evaluator.selection, evaluator.select_split.name
        now = {}
        full = self.is_final or self.scores_all(step)
        for s in self.scored if full else [target]:
            self.student.sparsify(s)
            metrics, out = evaluator.evaluate_outputs(self.student)
            now[s] = metrics[selection]
            if not math.isfinite(now[s]):
                raise NumericalError(f"minidisc iteration {self.it}: non-finite {split} "
                                     f"{selection} at step {step} for candidate {s:g}S")
            if full:  # the target's best too: every candidate's over the same evaluations
                self.evidence.offer(s, now[s], out)
        self.student.sparsify(None)
        self.best_target.offer(self.student, target, now[target], self.it, step)
        chosen = choose_sparsity(best, self.t_sparsity, target, lam, self.is_final,
                                 self.m.candidates_above_target)

        def keep() -> None:
            reuse = chosen == target and self.best_target.is_from(self.it, step)
            ta = self.best_target.model if reuse else narrow(self.student, chosen)
            self.kept = ta.eval().requires_grad_(False)
            state.chosen, state.step = chosen, step
            self._save()
            ctx.save(ta, self.folder / self.ckpt)

        dev = {sparsity_key(s): v for s, v in now.items()}
        score = tradeoff(best[sparsity_key(chosen)], chosen, lam)
        trades = {k: tradeoff(v, float(k), lam) for k, v in best.items()}
        if ctx.rt.is_main:
            logger.info("iteration %d step %d: %s %s %s; tradeoff (best %s + %g·s/100) %s; "
                        "chose %gS", self.it, step, split, selection,
                        " ".join(f"{s}S={v:.4f}" for s, v in dev.items()), self.metric, lam,
                        " ".join(f"{s}S={v:.4f}" for s, v in trades.items()), chosen)
        # the loop keeps this evaluation's model when its score is the best so far
        if state.kept_score is None or score > state.kept_score:
            state.kept_score, state.kept_at = score, chosen
        stop = False
        if self.confident and full and self.decide_from <= step < self.total:
            d = self.decision(step, state.kept_at)
            stop = d["state"] in ("ta", "target")
            if ctx.rt.is_main:
                logger.info("iteration %d step %d: %s", self.it, step,
                            decision_status(d, self.total))
        self._save()
        scalars = {**{f"{split}/{selection}/{s}S": v for s, v in dev.items()},
                   **{f"tradeoff/{s}S": v for s, v in trades.items()}, "chosen": chosen}
        return Evaluation(score, {split: dev, "chosen": chosen}, keep,
                          name=f"{chosen:g}S tradeoff", scalars=scalars, stop=stop)

    def run(self) -> tuple[nn.Module, dict[str, Any]]:
        """Train the sandwich; the model kept and the iteration's record."""
        ctx, m, it, target, state = self.ctx, self.m, self.it, self.target, self.state
        every = m.candidate_eval_every
        epochs = self.search_epochs or ctx.cfg.training.num_train_epochs
        if ctx.rt.is_main:
            logger.info("iteration %d of at most %d: teacher %gS; trains %s for %g epochs; "
                        "scores %s", it, m.target_iteration, self.t_sparsity,
                        " ".join(f"{s:g}S" for s in self.cands), epochs,
                        "only the target (final iteration)" if self.is_final
                        else "each of them" if every == 1
                        else f"the target at every evaluation, all at every {every}th")
        started = time.perf_counter()
        train = ctx.run_fit(self.student, self.train_step, self.evaluate, f"minidisc iter {it}",
                            stage=f"minidisc iteration {it}", epochs=self.epochs)
        ta = self.kept or ctx.load(self.folder / self.ckpt, "--resume").eval().requires_grad_(
            False)
        best, chosen = state.best, float(state.chosen)
        choice: dict[str, Any] = {"rule": m.tradeoff, "best_term": dict(best),
                                  "floor": state.floor, "teacher_metric": state.teacher_metric}
        if self.confident:
            d = self.decision(train.steps, chosen)
            if d["chosen"] != chosen:  # the kept TA was not beaten with confidence: the target
                chosen = float(d["chosen"])
                ta = self.best_target.model
                state.chosen = chosen
                self._save()
                ctx.save(ta, self.folder / self.ckpt)
            choice["decision"] = d
        line = choice_line(it, chosen, best, self.t_sparsity, target, m.lam, self.is_final,
                           self.metric, m.candidates_above_target, choice.get("decision"))
        if ctx.rt.is_main:
            logger.info("%s", line)
        ctx.reporter.scalars({"minidisc/chosen_sparsity": chosen}, it)
        ctx.reporter.text("minidisc/choice", line, it)
        # the report of the model that ends the trial carries the test metric and predictions
        ends_trial = (ends(chosen, target, self.is_final, m.search_epochs)
                      and self.best_target.is_from(it))
        record = {
            "iteration": it,
            "final": self.is_final,
            "epochs": self.epochs or ctx.cfg.training.num_train_epochs,
            "teacher_sparsity": self.t_sparsity,
            "candidates": [sparsity_key(s) for s in self.cands],
            "best_metric": dict(state.best_metric),
            "tradeoff": {sparsity_key(s): tradeoff(best[sparsity_key(s)], s, m.lam)
                         for s in self.scored if self.t_sparsity <= s <= target},
            "chosen": chosen,
            "choice": choice,
            "saved_at_step": state.step,
            "steps": train.steps,
            "wall_time_s": time.perf_counter() - started,
            "eval_time_s": train.eval_time_s,
            "history": train.history,
            **ctx.evaluator.report(ta, self.folder, self.ckpt, final=ends_trial),
        }
        return ta, record


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    m, evaluator = ctx.cfg.minidisc, ctx.evaluator
    teacher, teacher_info = ctx.load_teacher()
    target = float(m.target_sparsity)
    ctx.check_specs(teacher, [("sparsity", target)])
    if target <= teacher_info["sparsity"]:
        raise MiniDiscError(f"--target_sparsity {target:g} is not above the teacher's "
                            f"sparsity {teacher_info['sparsity']:g}")
    if ctx.rt.is_main:
        first = candidates(teacher.config.sparsity_map, teacher_info["sparsity"],
                           m.trunc_sparsity, target, m.candidates_above_target)
        logger.info("minidisc: at most %d iterations to %gS; each keeps the candidate with the "
                    "highest tradeoff (best %s + %g·s/100)%s as the next teacher (the last "
                    "keeps the target); iteration 1 candidates: %s", m.target_iteration,
                    target, term_name(ctx), m.lam,
                    "" if m.choice_confidence is None else
                    f" if it beats the target's with P >= {m.choice_confidence:g}",
                    " ".join(f"{s:g}S" for s in first))
    # finished iterations survive a --resume
    iterations = ctx.resumable.progress.setdefault("iterations", [])
    tas = [r for r in iterations if r["chosen"] != target]
    if tas:  # the last TA kept teaches the next iteration
        teacher = ctx.load(folder / tas[-1]["path"], "--resume").eval()
        teacher.requires_grad_(False)
    best_target = BestTarget(ctx, folder)
    while not iterations or not ends(iterations[-1]["chosen"], target,
                                     iterations[-1].get("final", False), m.search_epochs):
        it = len(iterations) + 1
        # after a search that kept the target, only the final iteration is left to run
        is_final = it == m.target_iteration or (
            bool(iterations) and iterations[-1]["chosen"] == target)
        ta, record = Iteration(ctx, teacher, it, folder, best_target, is_final).run()
        iterations.append(record)
        if record["chosen"] != target:
            teacher = ta
        line = after_line(it, record["chosen"], target, is_final, m.search_epochs,
                          record["epochs"])
        if line is not None and ctx.rt.is_main:
            logger.info("%s", line)
    last = iterations[-1]
    if best_target.is_from(last["iteration"]) or best_target.model is None:
        final = evaluator.report_of(last)  # the last iteration's checkpoint is the student
    else:
        # an earlier iteration's sandwich trained a better target-sparsity model
        path = f"student_iter_{best_target.info['iteration']}"
        if ctx.rt.is_main:
            os.replace(best_target.path, folder / path)
        logger.info("final student: the %g%% model of iteration %d (%s %s %.4f)", target,
                    best_target.info["iteration"], evaluator.select_split.name,
                    evaluator.selection, best_target.info["score"])
        final = evaluator.report_of(evaluator.report(best_target.model, folder, path,
                                                     final=True))
    if ctx.rt.is_main:
        shutil.rmtree(best_target.path, ignore_errors=True)
    tas = [r["chosen"] for r in iterations if r["chosen"] != target]
    out = {"teacher": teacher_info, "lam": m.lam, "target_sparsity": target,
           "teacher_assistants": tas, "iterations": iterations,
           "final_from_iteration": best_target.info.get("iteration", last["iteration"]),
           "final": final}
    dev = ctx.dev[0]
    majority = ev.majority_class(ctx.task, dev)
    if majority:  # what answering one class whatever the input scores: the report's floor
        const = [ctx.task.labels.index(majority[0])] * len(dev.examples)
        out["majority_class"] = {"label": majority[0], dev.name: ev.score(ctx.task, dev, const)}
    return out
