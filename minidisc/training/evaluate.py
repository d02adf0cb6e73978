"""Prediction, metrics, and the prediction files (GLUE submission tsv, CoNLL columns)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from minidisc.data.pipeline import EvalBatches, Split
from minidisc.data.tasks import Task
from minidisc.training.runtime import Runtime, model_inputs


@torch.inference_mode()
def predict(model: nn.Module, loader: EvalBatches, task: Task, rt: Runtime,
            probabilities: bool = False, progress: str | None = None) -> list[Any]:
    """Per example, in file order: a label id (`probabilities`: the list of class
    probabilities instead), a float (regression) or a list of tag ids (the first sub-token of
    each word carries its tag). `progress`: a progress bar with this title."""
    was_training = model.training
    model.eval()
    out: list[Any] = []
    batches = loader if progress is None else tqdm(loader, desc=progress, unit="batch",
                                                   dynamic_ncols=True)
    for batch in batches:
        with rt.autocast():
            logits = model(**model_inputs(batch, rt)).logits.float().cpu()
        labels = batch["labels"].cpu() if "labels" in batch else None
        if task.is_ner:
            ids = logits.argmax(-1)
            for row, lab in zip(ids, labels):
                out.append(row[lab != -100].tolist())
        elif task.is_regression:
            out.extend(logits.view(-1).tolist())
        elif probabilities:
            out.extend(logits.softmax(-1).tolist())
        else:
            out.extend(logits.argmax(-1).tolist())
    model.train(was_training)
    restored: list[Any] = [None] * len(out)
    for k, i in enumerate(loader.order):
        restored[i] = out[k]
    return restored


def as_labels(task: Task, split: Split, preds: list[Any]) -> list[Any]:
    """Predictions in the task's own vocabulary; words cut by --max_length are tagged 'O';
    scores are clipped to the task's range where it has one (STS-B: 0..5)."""
    if task.is_ner:
        return [[task.labels[t] for t in p] + ["O"] * (len(e.words) - len(p))
                for p, e in zip(preds, split.examples)]
    if task.is_regression:
        lo, hi = task.score_range or (-math.inf, math.inf)
        return [min(hi, max(lo, float(p))) for p in preds]
    return [task.labels[p] for p in preds]


def score(task: Task, split: Split, preds: list[Any]) -> dict[str, float]:
    if task.is_ner:
        return task.metric(as_labels(task, split, preds), [e.tags for e in split.examples])
    if task.is_regression:
        return task.metric(preds, [float(e.label) for e in split.examples])
    return task.metric(preds, [task.labels.index(e.label) for e in split.examples])


def majority_class(task: Task, split: Split) -> tuple[str, float] | None:
    """The most frequent gold label of a labelled classification split and its share (what a
    model that predicts one class scores); None for regression and tagging."""
    if task.is_ner or task.is_regression or not split.has_labels:
        return None
    label, n = Counter(e.label for e in split.examples).most_common(1)[0]
    return label, n / len(split.examples)


def accuracy(task: Task, split: Split, preds: list[Any]) -> float:
    golds = [task.labels.index(e.label) for e in split.examples]
    return sum(p == g for p, g in zip(preds, golds)) / len(golds)


def evaluate(model: nn.Module, split: Split, loader: EvalBatches, task: Task,
             rt: Runtime) -> dict[str, float]:
    return score(task, split, predict(model, loader, task, rt))


def write_predictions(task: Task, split: Split, preds: list[Any], folder: Path) -> Path:
    """GLUE: the submission file (`index<TAB>prediction`); tagging: word, [gold,] prediction
    per line, CoNLL-style."""
    labels = as_labels(task, split, preds)
    if task.is_ner:
        path = folder / f"{task.name}_{split.name}_predictions.txt"
        lines = []
        for e, tags in zip(split.examples, labels):
            gold = e.tags or [None] * len(e.words)
            lines += [" ".join(x for x in (w, g, t) if x is not None)
                      for w, g, t in zip(e.words, gold, tags)]
            lines.append("")
    else:
        path = folder / task.submission.get(split.name, f"{task.name}_{split.name}.tsv")
        fmt = "{:.3f}" if task.is_regression else "{}"
        lines = ["index\tprediction"] + [f"{e.guid}\t{fmt.format(p)}"
                                         for e, p in zip(split.examples, labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

