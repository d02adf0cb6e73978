"""The lambda-tradeoff schedule: pick the teacher assistant without a trial distillation.

A pure function, so it can be reused and tested on its own: given the best dev metric seen
at each candidate sparsity, choose s maximising metric(s) + lambda * s / 100.
"""

from __future__ import annotations

from collections.abc import Mapping


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
