"""Task metrics, computed by scikit-learn, scipy and seqeval (GLUE's definitions).

Each metric declares the names it reports (`names`), so the task table knows them without
importing the libraries: those load on the first score (the command line starts faster).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Metric = Callable[..., dict[str, float]]


def reports(*names: str) -> Callable[[Metric], Metric]:
    """Declare the keys a metric returns (tests check them against a real call)."""

    def mark(fn: Metric) -> Metric:
        fn.names = names  # type: ignore[attr-defined]
        return fn

    return mark


@reports("acc")
def acc(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score

    return {"acc": float(accuracy_score(golds, preds))}


@reports("acc", "f1", "acc_and_f1")
def acc_and_f1(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    """GLUE's MRPC/QQP metric: F1 of the positive class (binary), not macro F1."""
    from sklearn.metrics import accuracy_score, f1_score

    a = float(accuracy_score(golds, preds))
    f = float(f1_score(golds, preds, average="binary", pos_label=1, zero_division=0))
    return {"acc": a, "f1": f, "acc_and_f1": (a + f) / 2}


@reports("mcc")
def mcc(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    from sklearn.metrics import matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(golds, preds))}


@reports("pearson", "spearman", "corr")
def pearson_and_spearman(preds: Sequence[float], golds: Sequence[float]) -> dict[str, float]:
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    p, g = np.asarray(preds, dtype=float), np.asarray(golds, dtype=float)
    if np.ptp(p) == 0 or np.ptp(g) == 0:
        pear = spear = 0.0  # correlation is undefined for a constant input
    else:
        pear, spear = float(pearsonr(p, g)[0]), float(spearmanr(p, g)[0])
    return {"pearson": pear, "spearman": spear, "corr": (pear + spear) / 2}


@reports("f1", "precision", "recall")
def ner_f1(preds: list[list[str]], golds: list[list[str]]) -> dict[str, float]:
    """Entity-level scores; seqeval's default mode accepts both IOB1 and IOB2 tags."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {
        "f1": float(f1_score(golds, preds, zero_division=0)),
        "precision": float(precision_score(golds, preds, zero_division=0)),
        "recall": float(recall_score(golds, preds, zero_division=0)),
    }


@reports("acc", "macro_f1")
def acc_and_macro_f1(preds: Sequence[int], golds: Sequence[int]) -> dict[str, float]:
    """A custom classification task's metric: macro F1 weighs every class alike, so a rare
    class counts (accuracy alone hides it)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"acc": float(accuracy_score(golds, preds)),
            "macro_f1": float(f1_score(golds, preds, average="macro", zero_division=0))}
