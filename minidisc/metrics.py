"""Task metrics, computed by scikit-learn, scipy and seqeval (GLUE's definitions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import f1_score as entity_f1
from seqeval.metrics import precision_score as entity_precision
from seqeval.metrics import recall_score as entity_recall
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def acc(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    return {"acc": float(accuracy_score(golds, preds))}


def acc_and_f1(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    """GLUE's MRPC/QQP metric: F1 of the positive class (binary), not macro F1."""
    a = float(accuracy_score(golds, preds))
    f = float(f1_score(golds, preds, average="binary", pos_label=1, zero_division=0))
    return {"acc": a, "f1": f, "acc_and_f1": (a + f) / 2}


def mcc(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    return {"mcc": float(matthews_corrcoef(golds, preds))}


def pearson_and_spearman(preds: Sequence[float], golds: Sequence[float]) -> dict[str, float]:
    p, g = np.asarray(preds, dtype=float), np.asarray(golds, dtype=float)
    if np.ptp(p) == 0 or np.ptp(g) == 0:
        pear = spear = 0.0  # correlation is undefined for a constant input
    else:
        pear, spear = float(pearsonr(p, g)[0]), float(spearmanr(p, g)[0])
    return {"pearson": pear, "spearman": spear, "corr": (pear + spear) / 2}


def ner_f1(preds: list[list[str]], golds: list[list[str]]) -> dict[str, float]:
    """Entity-level scores; seqeval's default mode accepts both IOB1 and IOB2 tags."""
    return {
        "f1": float(entity_f1(golds, preds, zero_division=0)),
        "precision": float(entity_precision(golds, preds, zero_division=0)),
        "recall": float(entity_recall(golds, preds, zero_division=0)),
    }


def acc_and_macro_f1(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    """A custom classification task's metric: macro F1 weighs every class alike, so a rare
    class counts (accuracy alone hides it)."""
    return {"acc": float(accuracy_score(golds, preds)),
            "macro_f1": float(f1_score(golds, preds, average="macro", zero_division=0))}
