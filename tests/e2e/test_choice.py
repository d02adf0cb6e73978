"""Issue 22 (3, 4) end to end through run.py: --selection_split decides and dev is only
reported; each --tradeoff rule and --choice_confidence, outcomes forced by scripted outputs."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import FAST_FLAGS, write_sst2_task

from minidisc.compression.schedule import (
    choose_sparsity,
)
from minidisc.data.selection import carve
from minidisc.data.tasks import TASKS
from minidisc.main import execute, main
from minidisc.modes.common import Evaluator
from minidisc.training import evaluate as ev

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
                          str(out / "sparsebert_cls_finetune_sel16_sst2"), *FAST_FLAGS,
                          *SELECT])
    return {"common": common, "out": out, "finetune": finetuned, "sparsify": sparsified,
            "teacher": out / "sparsebert_cls_sparsify_sel16_sst2"}


def test_selection_split_decides_and_dev_is_only_reported(pipeline):
    ft, sp = pipeline["finetune"], pipeline["sparsify"]
    rec = ft["selection"]
    assert rec["split"] == "selection" and rec["selection_split"] == 16
    assert rec["sizes"] == {"train": 80, "selection": 16, "dev": 32}
    # the same carve in every mode of the pipeline (sparsify does not train: no train size)
    assert sp["selection"]["examples_sha256"] == rec["examples_sha256"]
    assert sp["selection"]["sizes"] == {"selection": 16, "dev": 32}
    saved = json.loads((pipeline["out"] / "sparsebert_cls_finetune_sel16_sst2"
                        / "results.json").read_text())
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
    """Evaluator.evaluate_outputs replaced by hand-made outputs on the selection examples, by
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
    monkeypatch.setattr(Evaluator, "evaluate_outputs", scripted_outputs(
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
    monkeypatch.setattr(Evaluator, "evaluate_outputs", scripted_outputs(table))
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

    examples = TASKS["sst2"].read(pipeline["common"][3], "train")
    _, held = carve(len(examples), 16, 5, [e.label for e in examples])
    return [examples[i].label for i in held]


def test_likelihood_rule_separates_majority_class_candidates(pipeline, monkeypatch):
    monkeypatch.setattr(Evaluator, "evaluate_outputs", scripted_outputs(
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
    monkeypatch.setattr(Evaluator, "evaluate_outputs", scripted_outputs(
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
    log = (pipeline["out"] / f"sparsebert_cls_minidisc_conf{name}_90S_lam0_sel16_sst2"
           / "run.log").read_text()
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
