"""The lambda-tradeoff schedule: pick the teacher assistant without a trial distillation.

Pure functions, so they can be reused and tested on their own: given the best score seen at
each candidate sparsity, choose s maximising score(s) + lambda * s / 100 (the reference's
rule, score = the selection metric); the other --tradeoff rules change the score, and
--choice_confidence keeps a TA only when a paired bootstrap says it beats the target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def tradeoff(metric: float, sparsity: float, lam: float) -> float:
    return metric + lam * float(sparsity) / 100


def top_candidate(best: Mapping[float | str, float], teacher_sparsity: float, target: float,
                  lam: float, above_target: bool = False) -> float | None:
    """The candidate with the highest tradeoff between the teacher's sparsity and the target
    (beyond it with `above_target`); ties go to the sparser one; None when there is none."""
    eligible = {float(s): m for s, m in best.items()
                if float(teacher_sparsity) <= float(s) and (above_target or float(s) <= target)}
    if not eligible:
        return None
    return max(eligible, key=lambda s: (tradeoff(eligible[s], s, lam), s))


def choose_sparsity(best: Mapping[float | str, float], teacher_sparsity: float, target: float,
                    lam: float, is_final: bool, above_target: bool = False) -> float:
    """The sparsity to keep: the target on the final iteration, else the best tradeoff among
    candidates between the teacher's sparsity and the target (ties go to the sparser one).

    With `above_target` (the reference's rule) candidates sparser than the target compete
    too, and when one of them wins the target is kept instead.
    Sparsities are compared as numbers ('85' < '9' as strings, never here).
    """
    target = float(target)
    if is_final:
        return target
    top = top_candidate(best, teacher_sparsity, target, lam, above_target)
    return target if top is None else min(target, top)


# --- the rules of --tradeoff and the noise-aware decision of --choice_confidence -------------
# Each rule turns one candidate's per-example outputs on the selection data into a performance
# term; the tradeoff adds lam * s / 100 to it. The reference's rule is `metric`.
TRADEOFFS = ("metric", "normalized", "likelihood")
BOOTSTRAP_SAMPLES = 1000
FLOOR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Outputs:
    """One model's per-example outputs on the selection data, in file order: its predictions
    (what the task's metric reads) and the log-likelihood it gives each gold label."""

    preds: Sequence[Any]
    loglik: Sequence[float]


@dataclass(frozen=True)
class Selection:
    """What a rule needs of the selection data besides a candidate's outputs: the gold labels,
    the task's selection metric as `metric(preds, golds) -> float`, the floor (the metric of a
    constant prediction: the majority class, or a zero correlation) and the current teacher's
    metric, the two ends `normalized` maps to 0 and 1."""

    golds: Sequence[Any]
    metric: Callable[[Sequence[Any], Sequence[Any]], float]
    floor: float
    teacher: float

    def __len__(self) -> int:
        return len(self.golds)


def normalize(metric: float, floor: float, teacher: float) -> float:
    """(metric - floor) / (teacher - floor): 0 for a constant predictor, 1 for the teacher;
    a teacher on the floor leaves metric - floor (there is no gain to divide by)."""
    gain = teacher - floor
    return (metric - floor) / (gain if gain > FLOOR_TOLERANCE else 1.0)


def performance(rule: str, sel: Selection, out: Outputs,
                idx: Sequence[int] | None = None) -> float:
    """The rule's performance term of one candidate, on the examples `idx` (all by default).

    metric: the selection metric itself (the reference). normalized: `normalize`d, so a
    lambda weighs sparsity against the same share of the teacher's gain over a constant
    predictor on every task and model. likelihood: the mean log-likelihood of the gold
    labels, continuous where the metric has steps (two majority-class models still differ by
    their confidence)."""
    if idx is None:
        idx = range(len(sel))
    if rule == "likelihood":
        return float(np.mean([out.loglik[i] for i in idx]))
    m = sel.metric([out.preds[i] for i in idx], [sel.golds[i] for i in idx])
    if rule == "metric":
        return m
    if rule == "normalized":
        return normalize(m, sel.floor, sel.teacher)
    raise ValueError(f"unknown tradeoff rule {rule!r}; one of {', '.join(TRADEOFFS)}")


def on_floor(sel: Selection, outputs: Iterable[Outputs]) -> bool:
    """Whether every candidate scores no better than a constant prediction: then their ranking
    is noise (at small scale they all answer the majority class)."""
    return all(sel.metric(list(o.preds), list(sel.golds)) <= sel.floor + FLOOR_TOLERANCE
               for o in outputs)


def paired_bootstrap(rule: str, sel: Selection, a: Outputs, s_a: float, b: Outputs, s_b: float,
                     lam: float, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> float:
    """P(a's tradeoff > b's): the share of `samples` resamples of the selection examples (the
    same resample for both: paired) in which a's tradeoff is strictly higher; a tie is not a
    win, so two identical models give 0."""
    rng = np.random.default_rng(seed)
    n = len(sel)
    wins = 0
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        wins += (tradeoff(performance(rule, sel, a, idx), s_a, lam)
                 > tradeoff(performance(rule, sel, b, idx), s_b, lam))
    return wins / samples


@dataclass(frozen=True)
class Decision:
    """What an iteration keeps and why. `state`: "ta" (the top TA beat the target with
    probability >= the confidence), "target" (it did not, and the evidence says so),
    "undecided" (the probability is between 1 - confidence and confidence), "floor" (every
    candidate sits on the floor). The last two ask for more training when budget is left; at
    the end of the budget they keep the target."""

    chosen: float
    state: str
    top: float | None
    probability: float | None


def decide(tradeoffs: Mapping[float, float], target: float, confidence: float,
           probability: Callable[[float], float], floor: bool) -> Decision:
    """The noise-aware choice among `tradeoffs` (sparsity -> tradeoff; eligible candidates and
    the target): the TA with the highest tradeoff is kept only when `probability(ta)`, P(its
    tradeoff > the target's), reaches `confidence`."""
    target = float(target)
    tas = {float(s): t for s, t in tradeoffs.items() if float(s) != target}
    if floor:
        return Decision(target, "floor", None, None)
    if not tas:
        return Decision(target, "target", None, None)
    top = max(tas, key=lambda s: (tas[s], s))
    p = probability(top)
    if p >= confidence:
        return Decision(top, "ta", top, p)
    return Decision(target, "target" if p <= 1 - confidence else "undecided", top, p)
