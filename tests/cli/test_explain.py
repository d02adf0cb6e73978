"""Runs that explain themselves: run.log, the start lines and MiniDisc's choices, provenance and
flat metric names in results.json, the one-class warning, and the demo's documented flags."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import pytest
from conftest import FAST_FLAGS, ROOT, write_sst2_task

from minidisc.compression.schedule import choice_line
from minidisc.main import execute


@pytest.fixture(scope="module")
def minidisc_run(tiny_bert, tmp_path_factory):
    """finetune -> sparsify -> a two-iteration minidisc, each given the previous run folder."""
    root = tmp_path_factory.mktemp("explain")
    data = write_sst2_task(root / "data")
    out = root / "out"
    common = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(out),
              *FAST_FLAGS]
    execute(["--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert),
             "--do_train", "--num_train_epochs", "2"])
    execute(["--mode", "sparsify", *common, "--teacher_model_path",
             str(out / "sparsebert_cls_finetune_sst2")])
    teacher = out / "sparsebert_cls_sparsify_sst2"
    execute(["--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
             "--num_train_epochs", "1", "--log_interval", "3"])
    return out, teacher


def test_run_log_has_start_lines_choices_and_no_progress_bars(minidisc_run):
    out, teacher = minidisc_run
    run = out / "sparsebert_cls_minidisc_90S_lam0.2_sst2"
    log = (run / "run.log").read_text(encoding="utf-8")
    assert "\r" not in log and "it/s" not in log and "█" not in log and "%|" not in log
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR) minidisc", line)
               for line in log.splitlines()), log
    assert "device: cpu (fp32)" in log
    assert f"teacher: {(teacher / 'model').resolve()} (the final checkpoint of the run folder " \
           f"{teacher.resolve()})" in log
    assert "examples: train 96, dev 32" in log
    # 96 examples in batches of 16: 6 steps per epoch; evaluations at 3 and 6
    assert "each training: 1 epoch x 6 steps per epoch = 6 steps (batch 16)" in log
    assert "evaluation every 3 steps and at the end, by dev acc" in log
    assert "minidisc: at most 2 iterations to 90S" in log
    assert "iteration 1 candidates: 50S 60S 70S 80S 85S 90S" in log
    assert re.search(r"iteration 1 step 3: dev acc 50S=[\d.]+ .*; tradeoff \(best dev acc "
                     r"\+ 0\.2·s/100\) 50S=[\d.]+ .*; chose \d+S", log)
    assert re.search(r"minidisc iter 1 step 3/6: \d+S tradeoff [\d.]+ \(best [\d.]+ at step "
                     r"\d\)", log)
    chose = re.search(r"iteration 1: chose (the target 90S: no TA, because .*|\d+S as TA "
                      r"\(tradeoff [\d.]+: dev acc [\d.]+ \+ 0\.2·0\.\d\d; .*\))$", log, re.M)
    assert chose, log
    finetune_log = (out / "sparsebert_cls_finetune_sst2" / "run.log").read_text()
    assert re.search(r"finetune step 12/12: dev acc [\d.]+ \(best [\d.]+ at step \d+\)",
                     finetune_log)



def _git(*args: str) -> str | None:
    """What git says about this checkout (None outside one), as the run recorded it."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None

def test_results_have_provenance_and_flat_metric_names(minidisc_run):
    out, teacher = minidisc_run
    res = json.loads((out / "sparsebert_cls_minidisc_90S_lam0.2_sst2" / "results.json")
                     .read_text())
    prov = res["provenance"]
    assert set(prov) >= {"started_at", "minidisc", "python", "torch", "transformers",
                         "git_commit", "git_dirty", "models"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", prov["started_at"])
    commit = _git("rev-parse", "HEAD")
    assert prov["git_commit"] == commit
    dirty = None if commit is None else bool(_git("status", "--porcelain",
                                                  "--untracked-files=no"))
    assert prov["git_dirty"] is dirty
    assert prov["models"] == {"teacher": {"path": str((teacher / "model").resolve()),
                                          "run_folder": str(teacher.resolve())}}
    assert isinstance(res["final"]["dev"]["acc"], float)  # final.dev.acc, not final.dev.dev
    assert isinstance(res["teacher"]["dev"]["acc"], float)
    assert all(isinstance(it["dev"]["acc"], float) for it in res["iterations"])


def test_choice_lines_name_the_choice_and_the_reason():
    best = {"50": 0.80, "70": 0.7812, "90": 0.70}
    assert choice_line(1, 70.0, best, 0.0, 90.0, 0.2, False, "dev acc_and_f1") == (
        "iteration 1: chose 70S as TA (tradeoff 0.9212: dev acc_and_f1 0.7812 + 0.2·0.70; "
        "the target 90S: tradeoff 0.8800: dev acc_and_f1 0.7000 + 0.2·0.90)")
    assert choice_line(2, 90.0, {"90": 0.7}, 70.0, 90.0, 0.2, True, "dev acc") == (
        "iteration 2: chose the target 90S: no TA, because it is the final iteration")
    line = choice_line(1, 90.0, {"50": 0.5, "90": 0.8}, 0.0, 90.0, 0.2, False, "dev acc")
    assert line.endswith("because the target's tradeoff is the highest (tradeoff 0.9800: "
                         "dev acc 0.8000 + 0.2·0.90)")
    line = choice_line(1, 90.0, {"90": 0.7, "95": 0.7}, 0.0, 90.0, 0.2, False, "dev acc",
                       above_target=True)
    assert "because 95S, above the target, has the highest tradeoff" in line


@pytest.mark.parametrize("predicts, warns", [("majority", True), ("minority", False)])
def test_one_class_model_is_warned_about(tiny_bert, tmp_path, monkeypatch, caplog, predicts,
                                         warns):
    from minidisc.cli import parse_args
    from minidisc.modes.common import prepare
    from minidisc.training import evaluate as ev

    data = write_sst2_task(tmp_path / "data")
    ctx = prepare(parse_args(["--mode", "finetune", "--task_name", "sst2", "--data_dir",
                              str(data), "--output_dir", str(tmp_path / "out"),
                              "--teacher_model_path", str(tiny_bert), "--use_cpu"]))
    dev = ctx.dev[0]
    label, rate = ev.majority_class(ctx.task, dev)
    index = ctx.task.labels.index(label)
    answer = index if predicts == "majority" else 1 - index
    monkeypatch.setattr(ev, "outputs",
                        lambda *a, **k: ev.Outputs([answer] * len(dev.examples), None))
    with caplog.at_level(logging.WARNING, logger="minidisc"):
        metrics, _ = ctx.evaluator.evaluate_split(None, dev)
    assert metrics["acc"] == pytest.approx(rate if warns else 1 - rate)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warns:
        assert warned == [f"dev acc {rate:.4f} equals the majority-class rate ({label!r} is "
                          f"{100 * rate:.2f}% of dev): the model predicts one class"]
    else:
        assert not warned


def test_demo_help_documents_every_flag():
    from minidisc.demo import _parser

    proc = subprocess.run([sys.executable, "-m", "minidisc.demo", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    flags = [a for a in _parser()._actions if a.option_strings != ["-h", "--help"]]
    assert len(flags) >= 9
    for action in flags:
        assert action.help, action.option_strings
        assert action.option_strings[0] in proc.stdout
    assert "interleaved" in proc.stdout and "median" in proc.stdout


def test_demo_latency_is_interleaved_with_spread_and_paired_speedup():
    import torch

    from minidisc.demo import cpu_latency_ms

    calls: list[str] = []

    class Recorder(torch.nn.Module):
        def __init__(self, name: str):
            super().__init__()
            self.name = name

        def forward(self, **_):
            calls.append(self.name)

    out = cpu_latency_ms({"teacher": Recorder("t"), "student": Recorder("s")},
                         {"input_ids": torch.zeros(1, 2)}, repeats=5)
    assert calls == ["t", "s"] + ["t", "s"] * 5  # one warm-up each, then turns
    for name in ("teacher", "student"):
        t = out[name]
        assert t["min"] <= t["q1"] <= t["median"] <= t["q3"] <= t["max"]
    assert set(out["student"]["speedup"]) == {"median", "q1", "q3", "min", "max"}
    assert "speedup" not in out["teacher"]
