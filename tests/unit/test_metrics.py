"""Task metrics on hand-computed inputs (GLUE's definitions, seqeval's entity F1)."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import f1_score

from minidisc import metrics
from minidisc.data.tasks import TASKS


def test_acc():
    assert metrics.acc([1, 0, 1, 1], [1, 0, 0, 1]) == {"acc": 0.75}
    assert metrics.acc([2, 0, 1], [2, 0, 1])["acc"] == 1.0


def test_acc_and_f1_is_binary_f1_not_macro():
    preds, golds = [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]
    # positive class: tp 1, fp 1, fn 0 -> P 1/2, R 1 -> F1 2/3
    # negative class: tp 3, fp 0, fn 1 -> P 1, R 3/4 -> F1 6/7; macro = 16/21
    out = metrics.acc_and_f1(preds, golds)
    assert out["acc"] == pytest.approx(0.8)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["acc_and_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    macro = f1_score(golds, preds, average="macro")
    assert macro == pytest.approx(16 / 21)
    assert out["f1"] != pytest.approx(macro)


def test_f1_without_predicted_positives_is_zero():
    out = metrics.acc_and_f1([0, 0, 0, 0], [1, 0, 1, 0])
    assert out == {"acc": 0.5, "f1": 0.0, "acc_and_f1": 0.25}


def test_mcc():
    # tp 2, tn 2, fp 1, fn 1 -> (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert metrics.mcc([1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0])["mcc"] == pytest.approx(1 / 3)
    assert metrics.mcc([1, 0, 1, 0], [1, 0, 1, 0])["mcc"] == pytest.approx(1.0)
    assert metrics.mcc([0, 1, 0, 1], [1, 0, 1, 0])["mcc"] == pytest.approx(-1.0)


def test_mcc_constant_predictions_is_zero():
    assert metrics.mcc([1, 1, 1, 1], [1, 0, 1, 0])["mcc"] == 0.0


def test_pearson_and_spearman():
    # deviations (-2,-1,0,1,2) and (-2,0,-1,2,1): 8 / sqrt(10 * 10); ranks are the values
    out = metrics.pearson_and_spearman([1, 2, 3, 4, 5], [1, 3, 2, 5, 4])
    assert out["pearson"] == pytest.approx(0.8)
    assert out["spearman"] == pytest.approx(0.8)
    assert out["corr"] == pytest.approx(0.8)


def test_spearman_is_rank_based():
    out = metrics.pearson_and_spearman([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 100.0])
    assert out["spearman"] == pytest.approx(1.0)
    assert out["pearson"] < 0.9
    assert out["corr"] == pytest.approx((out["pearson"] + 1.0) / 2)


@pytest.mark.parametrize("preds,golds", [
    ([2.5, 2.5, 2.5], [0.0, 2.0, 5.0]),  # constant predictions
    ([0.0, 2.0, 5.0], [3.0, 3.0, 3.0]),  # constant golds
])
def test_constant_input_gives_zero_correlation_not_nan(preds, golds):
    out = metrics.pearson_and_spearman(preds, golds)
    assert out == {"pearson": 0.0, "spearman": 0.0, "corr": 0.0}
    assert not any(math.isnan(v) for v in out.values())


def test_entity_f1_iob2():
    golds = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-MISC"]]
    # gold entities 3, predicted 3, correct 2 (PER, ORG)
    out = metrics.ner_f1(preds, golds)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)


def test_entity_f1_partial_span_is_wrong():
    out = metrics.ner_f1([["B-PER", "O", "O"]], [["B-PER", "I-PER", "O"]])
    assert out == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_entity_f1_iob1():
    # IOB1 (original CoNLL-2003): I- starts an entity, B- only splits two adjacent ones.
    golds = [["I-ORG", "B-ORG", "O", "I-PER", "I-PER"]]  # ORG, ORG, PER
    assert metrics.ner_f1(golds, golds)["f1"] == 1.0
    preds = [["I-ORG", "I-ORG", "O", "I-PER", "I-PER"]]  # one two-token ORG, PER
    out = metrics.ner_f1(preds, golds)
    assert out["precision"] == pytest.approx(1 / 2)
    assert out["recall"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx(0.4)


def test_entity_f1_iob1_equals_iob2_spelling():
    iob1 = [["I-PER", "I-PER", "O", "I-LOC"]]
    iob2 = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert metrics.ner_f1(iob1, iob2)["f1"] == 1.0


def test_entity_f1_no_entities_predicted_is_zero():
    out = metrics.ner_f1([["O", "O"]], [["B-PER", "O"]])
    assert out == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_registry_metric_names_and_selection(name):
    task = TASKS[name]
    if task.is_ner:
        keys = set(task.metric([["B-PER"]], [["B-PER"]]))
    elif task.is_regression:
        keys = set(task.metric([0.0, 1.0], [0.0, 1.0]))
    else:
        keys = set(task.metric([0, 1], [0, 1]))
    assert keys == set(task.metric_names)
    assert task.selection_metric in keys


def test_glue_metric_per_task():
    assert TASKS["cola"].selection_metric == "mcc"
    assert TASKS["mrpc"].metric is metrics.acc_and_f1
    assert TASKS["qqp"].metric is metrics.acc_and_f1
    assert TASKS["stsb"].selection_metric == "corr"
    assert TASKS["conll"].selection_metric == "f1"
    for name in ("sst2", "mnli", "qnli", "rte", "wnli", "demo"):
        assert TASKS[name].metric is metrics.acc
