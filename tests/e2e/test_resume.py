"""Resume after SIGKILL / SIGTERM gives the uninterrupted run's result; runs are deterministic.

Runs go through `python run.py` in subprocesses with one thread each, so float reductions are
the same in every process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST_FLAGS, ROOT, write_sst2_task
from safetensors.torch import load_file

from minidisc.main import execute

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def teacher(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_sst2_task(root / "data", n_train=64)
    out = root / "teachers"
    common = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(out),
              *FAST_FLAGS]
    execute(["--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert),
             "--num_train_epochs", "20"])
    execute(["--mode", "sparsify", *common, "--teacher_model_path",
             str(out / "sparsebert_cls_finetune_sst2")])
    return data, out / "sparsebert_cls_sparsify_sst2"


def _argv(mode, data, teacher, out, *extra):
    return [sys.executable, str(ROOT / "run.py"), "--mode", mode, "--task_name", "sst2",
            "--data_dir", str(data), "--output_dir", str(out), "--teacher_model_path",
            str(teacher), *FAST_FLAGS, "--log_interval", "2", *extra]


def _run(argv):
    return subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=600)


def _kill_once_saved(argv, out: Path, sig: int, min_step: int = 3, stage: str | None = None):
    """Start a run, wait for a saved state past `min_step` (of `stage`, when given), send
    `sig`."""
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        states = list(out.glob(".*.staging-*/state/trainer.pt"))
        if states:
            try:
                saved = torch.load(states[0], weights_only=True)
                step, at = saved["trainer"]["fit"]["step"], saved["stage"]
            except Exception:  # being replaced right now
                step, at = 0, None
            if step >= min_step and stage in (None, at):
                proc.send_signal(sig)
                break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _results(out: Path) -> dict:
    (run,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return json.loads((run / "results.json").read_text())


def _same(a: dict, b: dict, keys=("final",)) -> None:
    for k in keys:
        assert a[k] == b[k], k


@pytest.mark.parametrize("extra, stage", [
    (["--num_train_epochs", "3", "--sandwich_k", "1"], None),
    # killed in the final iteration that follows a shortened search which kept the target
    (["--num_train_epochs", "6", "--search_epochs", "1", "--lam", "10", "--final_sandwich",
      "target"], "minidisc iteration 2"),
], ids=["sampled", "search"])
def test_minidisc_killed_and_resumed_equals_uninterrupted(teacher, tmp_path, extra, stage):
    data, t = teacher
    ref = _run(_argv("minidisc", data, t, tmp_path / "a", *extra))
    assert ref.returncode == 0, ref.stderr
    argv = _argv("minidisc", data, t, tmp_path / "b", *extra)
    code, _ = _kill_once_saved(argv, tmp_path / "b", signal.SIGKILL, min_step=5, stage=stage)
    assert code == -signal.SIGKILL
    assert not any(p for p in (tmp_path / "b").iterdir() if not p.name.startswith("."))
    resumed = _run([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    _same(a, b, ("final", "teacher_assistants", "final_from_iteration"))
    for ia, ib in zip(a["iterations"], b["iterations"], strict=True):
        assert ia["chosen"] == ib["chosen"] and ia["best_metric"] == ib["best_metric"]
        assert ia["teacher_sparsity"] == ib["teacher_sparsity"]
        assert ia["history"] == ib["history"]
    run = next(p for p in (tmp_path / "b").iterdir() if not p.name.startswith("."))
    assert not (run / "state").exists() and not (run / ".best_target").exists()
    assert not list((tmp_path / "b").glob(".*.staging-*"))


def test_sigterm_saves_and_says_how_to_resume(teacher, tmp_path):
    data, t = teacher
    argv = _argv("maxidisc", data, t, tmp_path / "b", "--layer_or_sparsity_path", "50,90S",
                 "--num_train_epochs", "3")
    code, err = _kill_once_saved(argv, tmp_path / "b", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert "--resume" in err.strip().splitlines()[-1]
    resumed = _run([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    ref = _run(_argv("maxidisc", data, t, tmp_path / "ref", "--layer_or_sparsity_path",
                     "50,90S", "--num_train_epochs", "3"))
    assert ref.returncode == 0, ref.stderr
    a, b = _results(tmp_path / "ref"), _results(tmp_path / "b")
    assert [s["dev"] for s in a["stages"]] == [s["dev"] for s in b["stages"]]


def test_resume_without_a_saved_state_is_refused(teacher, tmp_path, capsys):
    from minidisc.main import main

    data, t = teacher
    argv = _argv("distill", data, t, tmp_path, "--layer_or_sparsity", "90S", "--resume")[2:]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no interrupted run" in err[0]


def test_same_seed_same_metrics_and_checkpoints(teacher, tmp_path):
    data, t = teacher
    outs = []
    for name in ("x", "y"):
        r = _run(_argv("distill", data, t, tmp_path / name, "--layer_or_sparsity", "90S",
                       "--num_train_epochs", "2"))
        assert r.returncode == 0, r.stderr
        outs.append(tmp_path / name / "sparsebert_cls_distill_90S_sst2")
    ra, rb = (json.loads((o / "results.json").read_text()) for o in outs)
    assert ra["final"] == rb["final"] and ra["train"]["history"] == rb["train"]["history"]
    wa, wb = (load_file(o / "model" / "model.safetensors") for o in outs)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_numerical_fault_exits_3_and_keeps_the_last_checkpoint(teacher, tmp_path, capsys,
                                                               monkeypatch):
    from minidisc.main import main
    from minidisc.models.sparse_bert import SparseBertForSequenceClassification
    from minidisc.modes.distill import Distiller

    calls = {"n": 0}
    real = Distiller.loss

    def poisoned(self, *a, **kw):
        calls["n"] += 1
        loss = real(self, *a, **kw)
        return loss * float("nan") if calls["n"] >= 7 else loss

    monkeypatch.setattr(Distiller, "loss", poisoned)
    data, t = teacher
    argv = _argv("distill", data, t, tmp_path, "--layer_or_sparsity", "90S",
                 "--num_train_epochs", "5")[2:]
    assert main(argv) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "non-finite training loss" in errors[0] and "step 7" in errors[0]
    (staging,) = list(tmp_path.glob(".*.staging-*"))
    model = SparseBertForSequenceClassification.from_pretrained(staging / "model")
    assert model.config.sparsity == 90
    assert not any(p for p in tmp_path.iterdir() if not p.name.startswith("."))


def test_minidisc_numerical_fault_names_the_candidate(teacher, tmp_path, capsys, monkeypatch):
    from minidisc.main import main
    from minidisc.modes.distill import Distiller

    calls = {"n": 0}
    real = Distiller.loss

    def poisoned(self, student, *a, **kw):
        calls["n"] += 1
        loss = real(self, student, *a, **kw)
        poison = calls["n"] > 6 and student.bert.active_sparsity == 90
        return loss * float("inf") if poison else loss

    monkeypatch.setattr(Distiller, "loss", poisoned)
    data, t = teacher
    assert main(_argv("minidisc", data, t, tmp_path)[2:]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "candidate 90S" in errors[0] and "at step" in errors[0]
