"""Prediction, metrics, and the prediction files (GLUE submission tsv, CoNLL columns)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from minidisc.data.pipeline import EvalBatches, Split
from minidisc.data.tasks import Task
from minidisc.training.runtime import Runtime, model_inputs


@dataclass
class Outputs:
    """Per example, in file order: the prediction (a label id, a float for regression, a list
    of tag ids for tagging) and, where the split is labelled, the log-likelihood of its gold
    label (tagging: the mean over its tagged words; regression: -(prediction - gold)^2 / 2, a
    unit-variance Gaussian's up to a constant). Both come from the same forward pass."""

    preds: list[Any]
    loglik: list[float] | None


def _restore(loader: EvalBatches, rows: list[Any]) -> list[Any]:
    restored: list[Any] = [None] * len(rows)
    for k, i in enumerate(loader.order):
        restored[i] = rows[k]
    return restored


@torch.inference_mode()
def outputs(model: nn.Module, loader: EvalBatches, task: Task, rt: Runtime,
            probabilities: bool = False, progress: str | None = None) -> Outputs:
    """`predict`'s predictions with the gold labels' log-likelihood, from one forward."""
    was_training = model.training
    model.eval()
    preds: list[Any] = []
    loglik: list[float] = []
    batches = loader if progress is None else tqdm(loader, desc=progress, unit="batch",
                                                   dynamic_ncols=True)
    for batch in batches:
        with rt.autocast():
            logits = model(**model_inputs(batch, rt)).logits.float().cpu()
        labels = batch["labels"].cpu() if "labels" in batch else None
        if task.is_ner:
            ids = logits.argmax(-1)
            logp = logits.log_softmax(-1)
            for row, lp, lab in zip(ids, logp, labels):
                tagged = lab != -100
                preds.append(row[tagged].tolist())
                gold = lp[tagged].gather(-1, lab[tagged].clamp(min=0).unsqueeze(-1))
                loglik.append(float(gold.mean()) if gold.numel() else 0.0)
        elif task.is_regression:
            values = logits.view(-1)
            preds.extend(values.tolist())
            if labels is not None:
                loglik.extend((-(values - labels.float()) ** 2 / 2).tolist())
        else:
            preds.extend((logits.softmax(-1) if probabilities else logits.argmax(-1)).tolist())
            if labels is not None:
                gold = logits.log_softmax(-1).gather(-1, labels.long().unsqueeze(-1))
                loglik.extend(gold.view(-1).tolist())
    model.train(was_training)
    has_ll = len(loglik) == len(preds) and bool(preds)
    return Outputs(_restore(loader, preds), _restore(loader, loglik) if has_ll else None)


def predict(model: nn.Module, loader: EvalBatches, task: Task, rt: Runtime,
            probabilities: bool = False, progress: str | None = None) -> list[Any]:
    """Per example, in file order: a label id (`probabilities`: the list of class
    probabilities instead), a float (regression) or a list of tag ids (the first sub-token of
    each word carries its tag). `progress`: a progress bar with this title."""
    return outputs(model, loader, task, rt, probabilities, progress).preds


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


def golds_and_metric(task: Task, split: Split, name: str
                     ) -> tuple[list[Any], Callable[[Sequence[Any], Sequence[Any]], float]]:
    """A labelled split's golds per example and its metric `name` as `f(preds, golds)` on any
    subset of examples (what a bootstrap over examples resamples), with `predict`'s preds."""
    if task.is_ner:
        golds: list[Any] = [e.tags for e in split.examples]

        def tagged(preds: Sequence[Any], gold: Sequence[Any]) -> float:
            tags = [[task.labels[t] for t in p] + ["O"] * (len(g) - len(p))
                    for p, g in zip(preds, gold)]
            return task.metric(tags, list(gold))[name]

        return golds, tagged
    if task.is_regression:
        golds = [float(e.label) for e in split.examples]
    else:
        golds = [task.labels.index(e.label) for e in split.examples]
    return golds, lambda preds, gold: task.metric(list(preds), list(gold))[name]


def floor_score(task: Task, split: Split, name: str) -> float:
    """The metric `name` of a constant prediction on a labelled split: the majority class
    (classification), the mean gold score (regression: a zero correlation), every word 'O'
    (tagging: no entity found). What a model that ignores its input scores."""
    n = len(split.examples)
    if task.is_ner:
        const = task.labels.index("O") if "O" in task.labels else 0
        preds: list[Any] = [[const] * len(e.words) for e in split.examples]
    elif task.is_regression:
        mean = sum(float(e.label) for e in split.examples) / n
        preds = [mean] * n
    else:
        preds = [task.labels.index(majority_class(task, split)[0])] * n
    return score(task, split, preds)[name]


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

