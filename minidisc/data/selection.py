"""--selection_split: training examples set aside to select on, so dev is only reported.

Checkpoints, early stopping and MiniDisc's TA choice are decided on the selection examples;
the reference decides them on dev and reports dev too, which makes the reported number the
maximum over many noisy looks at it. The carve depends only on the training examples, N and
the seed, so every mode of a pipeline (finetune, sparsify, distill, maxidisc, minidisc) run
with the same seed and N sets aside the same examples and never trains on them.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from minidisc.errors import MiniDiscError

FLAG = "--selection_split"
SPLIT = "selection"  # the carved split's name (its metrics in results.json sit under it)


def parse_size(text: str) -> float:
    """A count (a whole number >= 1) or a fraction in (0, 1); the flag's message otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if math.isfinite(value) and value >= 1 and value == int(value):
        return float(int(value))
    if 0 < value < 1:
        return value
    raise MiniDiscError(f"{FLAG} {text!r}: give a count of training examples (a whole number "
                        ">= 1) or a fraction of them in (0, 1)")


def carve(n: int, size: float, seed: int, labels: Sequence[object] | None = None
          ) -> tuple[list[int], list[int]]:
    """(training indices, selection indices), each in file order, of `n` training examples:
    `size` of them (a count, or a fraction when < 1) set aside, drawn with `seed`, stratified
    by `labels` where given (each class keeps its share in both parts); without labels a
    plain random draw (regression; tagging, by sentence)."""
    count = round(size * n) if size < 1 else int(size)
    if not 1 <= count < n:
        raise MiniDiscError(f"{FLAG} {size:g}: sets aside {count} of the {n} training examples;"
                            " at least 1 must be set aside and at least 1 left to train on")
    strata = None if labels is None else list(labels)
    if strata is not None:
        counts = Counter(strata)
        rare = [c for c, k in counts.items() if k < 2]
        if rare:
            raise MiniDiscError(f"{FLAG}: class {rare[0]!r} has a single training example; "
                                "a stratified selection split needs at least 2 of each")
        if count < len(counts) or n - count < len(counts):
            raise MiniDiscError(f"{FLAG} {size:g}: {count} selection and {n - count} training "
                                f"examples cannot each hold all {len(counts)} classes")
    from sklearn.model_selection import train_test_split  # only when a run carves

    train, selection = train_test_split(list(range(n)), test_size=count, random_state=seed,
                                        shuffle=True, stratify=strata)
    return sorted(train), sorted(selection)


def split_off(train: Any, task: Any, size: float, seed: int) -> tuple[Any, Any]:
    """(A pipeline.Split and its tasks.Task; not imported: the command line parses
    --selection_split with this module, and the pipeline imports the command line.) The
    training split without its selection examples, and those as the split `selection`
    (stratified by label for classification; regression and tagging unstratified)."""
    labels = None if task.is_ner or task.is_regression else [e.label for e in train.examples]
    kept, held = carve(len(train.examples), size, seed, labels)

    def part(name: str, idx: list[int]) -> Any:
        return replace(train, name=name, examples=[train.examples[i] for i in idx],
                       features=[train.features[i] for i in idx])

    return part(train.name, kept), part(SPLIT, held)


def fingerprint(examples: Sequence[object]) -> str:
    """A short hash of which examples (by guid, in order) a split holds."""
    guids = "\n".join(str(getattr(e, "guid", e)) for e in examples)
    return hashlib.sha256(guids.encode("utf-8")).hexdigest()[:16]
