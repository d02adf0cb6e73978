"""Issue 22 (3, 4): the selection split carved from train, and the TA-choice rules
(--tradeoff, --choice_confidence) on hand-made predictions."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
from conftest import FAST_FLAGS, write_sst2_task

from minidisc.compression.schedule import (
    Outputs,
    Selection,
    choose_sparsity,
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
from minidisc.main import execute, main
from minidisc.metrics import acc
from minidisc.modes.common import Context
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


# --- end to end through run.py -----------------------------------------------------------

SELECT = ["--selection_split", "16", "--seed", "5"]


@pytest.fixture(scope="module")
def pipeline(tiny_bert, tmp_path_factory):
    """A tiny teacher finetuned and sparsified, both deciding on the same 16 carved
    training examples."""
    root = tmp_path_factory.mktemp("choice")
    data = write_sst2_task(root / "data")
    out = root / "out"
    common = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(out)]
    finetuned = execute(["--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert),
                         "--num_train_epochs", "1", *FAST_FLAGS, *SELECT])
    sparsified = execute(["--mode", "sparsify", *common, "--teacher_model_path",
                          str(out / "sparsebert_cls_finetune_sst2"), *FAST_FLAGS, *SELECT])
    return {"common": common, "out": out, "finetune": finetuned, "sparsify": sparsified,
            "teacher": out / "sparsebert_cls_sparsify_sst2"}


def test_selection_split_decides_and_dev_is_only_reported(pipeline):
    ft, sp = pipeline["finetune"], pipeline["sparsify"]
    rec = ft["selection"]
    assert rec["split"] == "selection" and rec["selection_split"] == 16
    assert rec["sizes"] == {"train": 80, "selection": 16, "dev": 32}
    # the same carve in every mode of the pipeline (sparsify does not train: no train size)
    assert sp["selection"]["examples_sha256"] == rec["examples_sha256"]
    assert sp["selection"]["sizes"] == {"selection": 16, "dev": 32}
    saved = json.loads((pipeline["out"] / "sparsebert_cls_finetune_sst2" / "results.json")
                       .read_text())
    assert saved["selection"] == rec
    history = ft["train"]["history"]
    assert all(set(h) == {"step", "loss", "score", "selection"} for h in history)  # no dev
    scores = [h["selection"]["acc"] for h in history]
    assert ft["train"]["best_step"] == history[scores.index(max(scores))]["step"]
    assert ft["train"]["best_score"] == max(scores)
    assert ft["final"]["selection"]["acc"] == pytest.approx(max(scores))
    assert set(ft["final"]["dev"]) == {"acc"}  # reported


def test_default_selects_on_dev(tiny_bert, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    res = execute(["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data),
                   "--output_dir", str(tmp_path / "out"), "--teacher_model_path",
                   str(tiny_bert), "--num_train_epochs", "1", *FAST_FLAGS])
    assert res["selection"] == {"split": "dev", "selection_split": None,
                                "sizes": {"train": 96, "dev": 32}}
    assert set(res["train"]["history"][0]) == {"step", "loss", "score", "dev"}


def scripted_outputs(table: dict):
    """Context.evaluate_outputs replaced by hand-made outputs on the selection examples, by
    the model's active sparsity (`teacher`: the sparsity-0 teacher): each entry is `wrong`
    (how many of the first examples are mispredicted; "majority": the majority class for
    all) and the log-likelihood given every gold label."""

    def evaluate_outputs(self, model):
        s = float(model.bert.active_sparsity or 0)
        wrong, loglik = table.get(s, table["other"]) if s else table["teacher"]
        golds = [self.task.labels.index(e.label) for e in self.select_split.examples]
        if wrong == "majority":
            preds = [Counter(golds).most_common(1)[0][0]] * len(golds)
        else:
            preds = [1 - g if i < wrong else g for i, g in enumerate(golds)]
        acc_ = sum(p == g for p, g in zip(preds, golds)) / len(golds)
        return {"acc": acc_}, ev.Outputs(preds, [loglik] * len(golds))

    return evaluate_outputs


def minidisc(pipeline, suffix: str, *flags: str) -> dict:
    return execute(["--mode", "minidisc", *pipeline["common"], "--teacher_model_path",
                    str(pipeline["teacher"]), *FAST_FLAGS, *SELECT, "--num_train_epochs", "1",
                    "--log_interval", "3", "--final_sandwich", "target", "--trunc_sparsity",
                    "80", "--model_suffix", suffix, *flags])


def test_metric_rule_records_and_follows_the_reference(pipeline, monkeypatch):
    monkeypatch.setattr(Context, "evaluate_outputs", scripted_outputs(
        {"teacher": (0, -0.1), 80.0: (1, -0.5), 90.0: (3, -0.5), "other": (8, -0.7)}))
    res = minidisc(pipeline, "metric", "--lam", "0")
    first = res["iterations"][0]
    assert res["selection"]["split"] == "selection"
    assert first["choice"]["rule"] == "metric" and "decision" not in first["choice"]
    assert first["best_metric"]["80"] == pytest.approx(15 / 16)
    assert first["chosen"] == 80 and res["teacher_assistants"] == [80]
    assert set(first["history"][0]["selection"]) == set(first["candidates"])
    assert "dev" in first and "selection" in first  # each model reported on both


def test_normalized_rule_weighs_lambda_against_the_teachers_gain(pipeline, monkeypatch):
    """One example apart (1/16 of accuracy) outweighs lam 1 over 10 points of sparsity under
    `normalized` (the gain over the floor is about half the accuracy range), not under
    `metric`."""
    table = {"teacher": (0, -0.1), 80.0: (1, -0.5), 90.0: (2, -0.5), "other": (8, -0.7)}
    monkeypatch.setattr(Context, "evaluate_outputs", scripted_outputs(table))
    res = minidisc(pipeline, "norm", "--lam", "1", "--tradeoff", "normalized")
    first = res["iterations"][0]
    choice = first["choice"]
    golds = Counter(e for e in _selection_labels(pipeline))
    floor = max(golds.values()) / 16
    assert choice["floor"] == pytest.approx(floor) and choice["teacher_metric"] == 1.0
    for s, wrong in ((80, 1), (90, 2)):
        assert choice["best_term"][str(s)] == pytest.approx((1 - wrong / 16 - floor)
                                                            / (1 - floor))
        assert first["best_metric"][str(s)] == pytest.approx(1 - wrong / 16)
    # the reference's rule on the same metrics keeps the target
    metric = {float(k): v for k, v in first["best_metric"].items()}
    assert choose_sparsity(metric, 0, 90, 1.0, is_final=False) == 90
    assert first["chosen"] == 80


def _selection_labels(pipeline) -> list[str]:
    """The labels of the carved examples, carved again here as run.py does."""
    from minidisc.data.selection import carve

    examples = TASKS["sst2"].read(pipeline["common"][3], "train")
    _, held = carve(len(examples), 16, 5, [e.label for e in examples])
    return [examples[i].label for i in held]


def test_likelihood_rule_separates_majority_class_candidates(pipeline, monkeypatch):
    monkeypatch.setattr(Context, "evaluate_outputs", scripted_outputs(
        {"teacher": (0, -0.1), 85.0: ("majority", -0.3), 90.0: ("majority", -0.6),
         "other": ("majority", -0.65)}))
    first = minidisc(pipeline, "ll", "--lam", "0", "--tradeoff", "likelihood")["iterations"][0]
    # equal metrics: the reference's rule keeps the sparsest, the target
    metric = {float(k): v for k, v in first["best_metric"].items()}
    assert choose_sparsity(metric, 0, 90, 0.0, is_final=False) == 90
    assert first["choice"]["best_term"]["85"] == pytest.approx(-0.3)
    assert first["chosen"] == 85


@pytest.mark.parametrize("name, table, chosen, state, steps", [
    # far better than the target on every example: decided at the first look after the
    # search budget (step 6 of 10)
    ("sure", {80.0: (0, -0.5), 90.0: (8, -0.5)}, 80, "ta", 6),
    # one example better: no decision; the search trains on to the full budget and keeps
    # the target
    ("coin", {80.0: (2, -0.5), 90.0: (3, -0.5)}, 90, "undecided", 10),
    # everyone answers the majority class: nothing to decide on, whatever lambda says
    ("floor", {90.0: ("majority", -0.5)}, 90, "floor", 10),
])
def test_choice_confidence(pipeline, monkeypatch, name, table, chosen, state, steps):
    monkeypatch.setattr(Context, "evaluate_outputs", scripted_outputs(
        {"teacher": (0, -0.1), "other": ("majority", -0.7), **table}))
    res = minidisc(pipeline, f"conf{name}", "--lam", "0", "--choice_confidence", "0.8",
                   "--num_train_epochs", "2", "--search_epochs", "1")
    first = res["iterations"][0]
    d = first["choice"]["decision"]
    assert (first["chosen"], d["state"], d["confidence"]) == (chosen, state, 0.8)
    assert first["steps"] == steps
    if state == "ta":
        assert d["probability"] >= 0.8 and res["teacher_assistants"] == [80]
    elif state == "undecided":
        assert 0.2 < d["probability"] < 0.8 and res["teacher_assistants"] == []
    else:
        assert d["probability"] is None
    log = (pipeline["out"] / f"sparsebert_cls_minidisc_conf{name}_90S_lam0_sst2" / "run.log"
           ).read_text()
    assert f"iteration 1: chose {chosen:g}S" in log
    assert state != "ta" or f"P(80S's tradeoff > the target's) = {d['probability']:.3f}" in log


@pytest.mark.parametrize("flags, message", [
    (["--selection_split", "0"], "error: --selection_split '0': give a count"),
    (["--selection_split", "200"], "error: --selection_split 200: sets aside 200 of the 96"),
    (["--choice_confidence", "0.5"], "error: --choice_confidence 0.5: must be in (0.5, 1]"),
    (["--tradeoff", "agreement"], "error: argument --tradeoff: invalid choice: 'agreement'"),
])
def test_bad_choice_flags_exit_2(tiny_bert, tmp_path, capsys, flags, message):
    data = write_sst2_task(tmp_path / "data")
    code = main(["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data),
                 "--output_dir", str(tmp_path / "out"), "--teacher_model_path", str(tiny_bert),
                 *FAST_FLAGS, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(message)
    assert not (tmp_path / "out").exists()
