"""The lambda-tradeoff schedule: pick the teacher assistant without a trial distillation.

Pure functions, so they can be reused and tested on their own: given the best score seen at
each candidate sparsity, choose s maximising score(s) + lambda * s / 100 (the reference's
rule, score = the selection metric); the other --tradeoff rules change the score, and
--choice_confidence keeps a TA only when a paired bootstrap says it beats the target. Beside
them: which sparsities are candidates, which of them a sandwich step trains, when the trial
ends, and the lines that explain each choice.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minidisc.compression.sparsity_map import sparsities, sparsity_key
from minidisc.registry import TRADEOFFS


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


def choice_line(it: int, chosen: float, best: dict[str, float], t_sparsity: float,
                target: float, lam: float, is_final: bool, metric: str,
                above_target: bool = False, decision: dict | None = None) -> str:
    """One line per iteration: the sparsity kept and why (`best`: the best performance term
    per candidate sparsity key; `metric` names it, e.g. "dev acc_and_f1"; `decision`: the
    --choice_confidence decision behind it)."""
    if decision is not None and not is_final:
        return _decision_line(it, chosen, best, target, lam, metric, decision)

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


def decision_status(d: dict, total: int) -> str:
    """How a --choice_confidence decision stands at an evaluation of the search."""
    if d["state"] == "floor":
        return (f"every candidate scores as a constant prediction: the search trains on (up "
                f"to step {total})")
    if d["top"] is None:
        return "no candidate but the target: decided"
    p = f"P({d['top']:g}S's tradeoff > the target's) = {d['probability']:.3f}"
    if d["state"] == "undecided":
        return (f"{p}, between {1 - d['confidence']:g} and {d['confidence']:g}: undecided, the "
                f"search trains on (up to step {total})")
    return f"{p}: decided, {d['chosen']:g}S"


def _decision_line(it: int, chosen: float, best: dict[str, float], target: float, lam: float,
                   metric: str, d: dict) -> str:
    def terms(s: float) -> str:
        m = best[sparsity_key(s)]
        return f"tradeoff {tradeoff(m, s, lam):.4f}: {metric} {m:.4f} + {lam:g}·{s / 100:.2f}"

    head = f"iteration {it}: chose {chosen:g}S"
    if d["state"] == "ta":
        return (f"{head} as TA: P({chosen:g}S's tradeoff > the target's) = "
                f"{d['probability']:.3f} >= {d['confidence']:g} ({terms(chosen)}; the target "
                f"{target:g}S: {terms(target)})")
    if d["state"] == "floor":
        why = "every candidate scores as a constant prediction (the floor) at the full budget"
    elif d["top"] is None:
        why = "no candidate but the target"
    else:
        p = f"P({d['top']:g}S's tradeoff > the target's) = {d['probability']:.3f}"
        why = (f"{p} < {d['confidence']:g}" + (", undecided at the full budget"
                                                 if d["state"] == "undecided" else ""))
    return f"{head}, the target: no TA, because {why} ({terms(target)})"


def ends(chosen: float, target: float, is_final: bool, search_epochs: float | None) -> bool:
    """Whether an iteration that kept `chosen` ends the trial: the final one does; a search
    that kept the target does unless --search_epochs shortened it (its target model had less
    training than a student gets, so the final iteration still trains one)."""
    return is_final or (chosen == target and search_epochs is None)


def after_line(it: int, chosen: float, target: float, is_final: bool,
               search_epochs: float | None, epochs: float) -> str | None:
    """What follows iteration `it`, when it is not what the choice line says already: only a
    search that kept the target and did not end the trial (--search_epochs) is followed by a
    final iteration from the same teacher."""
    if chosen != target or ends(chosen, target, is_final, search_epochs):
        return None
    return (f"the final iteration distils the target from the same teacher (the search ran "
            f"{epochs:g} epochs)")
