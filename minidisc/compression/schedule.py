"""The lambda-tradeoff schedule: pick the teacher assistant without a trial distillation.

Pure functions, so they can be reused and tested on their own: given the best dev metric
seen at each candidate sparsity, choose s maximising metric(s) + lambda * s / 100; which
sparsities are candidates, which of them a sandwich step trains, when the trial ends, and the
lines that explain each choice.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from minidisc.compression.sparsity_map import sparsities, sparsity_key


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
