"""Issue 22 (3, 4): the TA-choice rules (--tradeoff, --choice_confidence) on hand-made
predictions, evaluation's per-example outputs, and the selection-split carve."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from minidisc.compression.schedule import (
    Outputs,
    Selection,
    decide,
    on_floor,
    paired_bootstrap,
    performance,
    tradeoff,
)
from minidisc.data.examples import PairExample, TagExample
from minidisc.data.pipeline import EvalBatches, Split
from minidisc.data.selection import carve, parse_size, split_off
from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError
from minidisc.metrics import acc
from minidisc.training import evaluate as ev
from minidisc.training.runtime import setup

# --- the rules ---------------------------------------------------------------------------

GOLDS = [1, 1, 1, 0] * 5  # 20 examples, majority class 1 at 75%


def accuracy(preds, golds) -> float:
    return acc(preds, golds)["acc"]


SEL = Selection(GOLDS, accuracy, floor=0.75, teacher=0.95)


def out(preds, loglik=None) -> Outputs:
    return Outputs(list(preds), list(loglik if loglik is not None else [0.0] * len(preds)))


MAJORITY = out([1] * 20, [-0.6] * 20)
PERFECT = out(GOLDS, [-0.1] * 20)


def test_metric_rule_is_the_reference_metric():
    assert performance("metric", SEL, MAJORITY) == pytest.approx(0.75)
    assert performance("metric", SEL, PERFECT) == pytest.approx(1.0)
    # on a subset of the examples: the first three are all class 1, all right
    assert performance("metric", SEL, MAJORITY, [0, 1, 2]) == 1.0


def test_normalized_maps_floor_to_0_and_teacher_to_1():
    assert performance("normalized", SEL, MAJORITY) == pytest.approx(0.0)
    teacher_like = out(GOLDS[:19] + [1])  # one mistake: 0.95, the teacher's metric
    assert performance("normalized", SEL, teacher_like) == pytest.approx(1.0)
    assert performance("normalized", SEL, PERFECT) == pytest.approx(0.25 / 0.20)
    # a lambda weighs the same share of the teacher's gain on a task with another floor
    other = Selection([0, 1] * 10, accuracy, floor=0.5, teacher=0.9)
    half_gain = out([0, 1] * 6 + [1] * 8)  # 0.8: (0.8 - 0.5) / 0.4
    assert performance("normalized", other, half_gain) == pytest.approx(0.75)
    # a teacher on the floor: no gain to divide by, the term is m - floor
    flat = Selection(GOLDS, accuracy, floor=0.75, teacher=0.75)
    assert performance("normalized", flat, PERFECT) == pytest.approx(0.25)


def test_likelihood_separates_two_majority_class_models():
    sure = out([1] * 20, [math.log(0.9) if g else math.log(0.1) for g in GOLDS])
    hedged = out([1] * 20, [math.log(0.6) if g else math.log(0.4) for g in GOLDS])
    assert performance("metric", SEL, sure) == performance("metric", SEL, hedged)
    expected = 0.75 * math.log(0.6) + 0.25 * math.log(0.4)
    assert performance("likelihood", SEL, hedged) == pytest.approx(expected)
    assert performance("likelihood", SEL, hedged) > performance("likelihood", SEL, sure)


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown tradeoff rule"):
        performance("agreement", SEL, PERFECT)


def test_on_floor():
    assert on_floor(SEL, [MAJORITY, out([0] + [1] * 19)])  # 0.75 and 0.70
    assert not on_floor(SEL, [MAJORITY, PERFECT])


def test_paired_bootstrap():
    # far better on every resample: P = 1; against itself: a tie is no win, P = 0
    assert paired_bootstrap("metric", SEL, PERFECT, 90, MAJORITY, 90, 0.0, 200) == 1.0
    assert paired_bootstrap("metric", SEL, PERFECT, 90, PERFECT, 90, 0.0, 200) == 0.0
    # one example apart: a coin flip, not a decision
    one_off = out(GOLDS[:-1] + [1])
    p = paired_bootstrap("metric", SEL, PERFECT, 80, one_off, 90, 0.0, 400, seed=3)
    assert 0.4 < p < 0.8
    assert p == paired_bootstrap("metric", SEL, PERFECT, 80, one_off, 90, 0.0, 400, seed=3)
    # the sparsity term counts: at lambda 10 the sparser model's 0.1 of tradeoff wins
    assert paired_bootstrap("metric", SEL, PERFECT, 80, one_off, 90, 10.0, 200) == 0.0


def test_decide():
    tr = {80.0: 0.9, 85.0: 0.8, 90.0: 0.7}
    p = {80.0: 0.93}.get
    assert decide(tr, 90, 0.9, p, floor=False) == (ta := decide(tr, 90, 0.9, p, False))
    assert (ta.chosen, ta.state, ta.top, ta.probability) == (80.0, "ta", 80.0, 0.93)
    undecided = decide(tr, 90, 0.95, p, floor=False)
    assert (undecided.chosen, undecided.state) == (90.0, "undecided")
    target = decide(tr, 90, 0.9, lambda s: 0.05, floor=False)
    assert (target.chosen, target.state, target.probability) == (90.0, "target", 0.05)
    floor = decide(tr, 90, 0.9, p, floor=True)
    assert (floor.chosen, floor.state, floor.probability) == (90.0, "floor", None)
    assert decide({90.0: 0.7}, 90, 0.9, p, floor=False).state == "target"


def test_tradeoff_is_the_reference_formula():
    assert tradeoff(0.8, 90, 0.2) == pytest.approx(0.98)


# --- per-example outputs from one forward ------------------------------------------------

class FixedLogits(torch.nn.Module):
    """A 'model' that returns given logits per batch row, whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, **_):
        rows = self.logits[input_ids[:, 0]]
        return type("O", (), {"logits": rows})()


def batches(rows: list[int], labels: torch.Tensor) -> EvalBatches:
    """One batch whose k-th row is example `rows[k]` (input id = example index)."""
    ids = torch.tensor(rows).unsqueeze(-1)
    return EvalBatches([{"input_ids": ids, "labels": labels}], rows)


def test_outputs_give_loglik_of_the_gold_in_file_order():
    rt = setup(True, False, -1, False, "ddp")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    order = [2, 0, 1]  # the loader's length-sorted order
    golds = torch.tensor([0, 0, 1])  # of examples 2, 0, 1
    got = ev.outputs(FixedLogits(logits), batches(order, golds), TASKS["sst2"], rt)
    assert got.preds == [0, 1, 0]
    logp = logits.log_softmax(-1)
    assert got.loglik == pytest.approx([float(logp[0, 0]), float(logp[1, 1]), float(logp[2, 0])])


def test_floor_score_is_a_constant_predictions_metric():
    task = TASKS["mrpc"]
    split = Split("dev", [PairExample(str(i), "a", "b", y) for i, y in
                          enumerate(["1", "1", "1", "0"])], [])
    assert ev.floor_score(task, split, "acc") == pytest.approx(0.75)
    assert ev.floor_score(task, split, "f1") == pytest.approx(2 * 0.75 / 1.75)
    stsb = Split("dev", [PairExample(str(i), "a", "b", y) for i, y in
                         enumerate(["1.0", "2.0", "4.5"])], [])
    assert ev.floor_score(TASKS["stsb"], stsb, "corr") == 0.0
    conll = Split("dev", [TagExample("0", ["john", "ran"], ["B-PER", "O"])], [])
    assert ev.floor_score(TASKS["conll"], conll, "f1") == 0.0


def test_golds_and_metric_scores_any_subset():
    split = Split("dev", [TagExample("0", ["john", "ran"], ["B-PER", "O"]),
                          TagExample("1", ["paris"], ["B-LOC"])], [])
    task = TASKS["conll"]
    golds, f = ev.golds_and_metric(task, split, "f1")
    per, loc = task.labels.index("B-PER"), task.labels.index("B-LOC")
    assert f([[per, 0], [loc]], golds) == 1.0
    assert f([[per]], golds[:1]) == 1.0  # a word cut by --max_length is tagged 'O'
    assert f([[0, 0]], golds[:1]) == 0.0


# --- the selection split -----------------------------------------------------------------

def test_parse_size():
    assert parse_size("40") == 40 and parse_size("0.25") == 0.25
    for bad in ("0", "-3", "1.5", "x", "nan", "inf"):
        with pytest.raises(MiniDiscError, match="--selection_split"):
            parse_size(bad)


def test_carve_sizes_disjoint_and_deterministic():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    train, sel = carve(100, 20, seed=7, labels=labels)
    assert len(sel) == 20 and len(train) == 80
    assert sorted(train + sel) == list(range(100)) and not set(train) & set(sel)
    assert train == sorted(train) and sel == sorted(sel)
    assert (train, sel) == carve(100, 20, seed=7, labels=labels)  # same seed, same carve
    assert sel != carve(100, 20, seed=8, labels=labels)[1]
    assert len(carve(100, 0.1, seed=7)[1]) == 10


def test_carve_is_stratified():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    _, sel = carve(100, 20, seed=1, labels=labels)
    assert Counter(labels[i] for i in sel) == {"a": 12, "b": 6, "c": 2}


def test_carve_refuses_what_cannot_be_carved():
    with pytest.raises(MiniDiscError, match="--selection_split 100: sets aside 100 of the 100"):
        carve(100, 100, 0)
    with pytest.raises(MiniDiscError, match="'c' has a single training example"):
        carve(5, 2, 0, ["a", "a", "b", "b", "c"])
    with pytest.raises(MiniDiscError, match="cannot each hold all 3 classes"):
        carve(9, 2, 0, ["a", "b", "c"] * 3)


def test_split_off_keeps_features_with_examples():
    examples = [PairExample(str(i), f"s{i}", None, "01"[i % 2]) for i in range(10)]
    train = Split("train", examples, [{"input_ids": [i]} for i in range(10)])
    kept, held = split_off(train, TASKS["sst2"], 4, seed=0)
    assert held.name == "selection" and len(held.examples) == 4 and len(kept.examples) == 6
    for s in (kept, held):
        assert [f["input_ids"][0] for f in s.features] == [int(e.guid) for e in s.examples]
    assert Counter(e.label for e in held.examples) == {"0": 2, "1": 2}
    # tagging and regression: by example (sentence), unstratified
    sents = Split("train", [TagExample(str(i), ["w"], ["O"]) for i in range(6)],
                  [{"i": i} for i in range(6)])
    assert len(split_off(sents, TASKS["conll"], 0.5, seed=0)[1].examples) == 3
