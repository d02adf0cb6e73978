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


# --- a kill inside any write of the state or of the best checkpoint ------------------------

# the state is trainer.pt, the best checkpoint model/; "model.done:2": between the second best
# checkpoint and the state saved after it
KILL_POINTS = ["trainer.pt.written:11", "model.moved:3", "model.replaced:3", "model.done:2"]


def _run_folder(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    (run,) = [p for p in out.iterdir() if not p.name.startswith(".") and ".prev-" not in p.name]
    return (json.loads((run / "results.json").read_text()),
            load_file(run / "model" / "model.safetensors"))


def test_finetune_killed_inside_any_write_resumes_exactly(tiny_bert, tmp_path):
    """The run is killed (os._exit, as SIGKILL) inside the n-th write of the loop's state or
    of the best checkpoint, and between the two; each resumed run ends as the uninterrupted
    one: same dev history, best step, final metrics and weights."""
    from minidisc.files import CRASH_AT

    data = write_sst2_task(tmp_path / "data", n_train=64)

    def argv(out: Path) -> list[str]:
        # 32 steps, 16 evaluations; it learns from step 20 on: bests at 2, 20, 24, ...
        return _argv("finetune", data, tiny_bert, out, "--do_train", "--num_train_epochs", "8",
                     "--num_patience_epochs", "100")

    ref = _run(argv(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    want, weights = _run_folder(tmp_path / "ref")
    assert len({h["score"] for h in want["train"]["history"]}) > 3  # several bests were saved
    for point in KILL_POINTS:
        out = tmp_path / point.replace(":", "_")
        run = argv(out)
        killed = subprocess.run(run, env={**ENV, CRASH_AT: point}, capture_output=True,
                                text=True, timeout=600)
        assert killed.returncode == 137, (point, killed.stderr[-2000:])
        resumed = _run([*run, "--resume"])
        assert resumed.returncode == 0, (point, resumed.stderr[-2000:])
        got, got_weights = _run_folder(out)
        assert got["train"]["history"] == want["train"]["history"], point
        assert got["train"]["best_step"] == want["train"]["best_step"], point
        assert got["final"] == want["final"], point
        assert all(torch.equal(got_weights[k], weights[k]) for k in weights), point
        assert sorted(p.name for p in out.iterdir()) == ["sparsebert_cls_finetune_sst2"], point
        # nothing of the write the kill cut short is left in the run folder
        assert not [p for p in out.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name], point


def test_resume_with_other_flags_is_refused_and_touches_nothing(tiny_bert, tmp_path, capsys):
    from minidisc.files import CRASH_AT
    from minidisc.main import main

    data = write_sst2_task(tmp_path / "data", n_train=64)
    argv = _argv("finetune", data, tiny_bert, tmp_path / "out", "--do_train",
                 "--num_train_epochs", "2")
    killed = subprocess.run(argv, env={**ENV, CRASH_AT: "trainer.pt.done:2"},
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == 137, killed.stderr[-2000:]
    (staging,) = (tmp_path / "out").glob(".*.staging-*")

    def listing() -> list[tuple[str, int, int]]:
        return sorted((str(p.relative_to(tmp_path)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in (tmp_path / "out").rglob("*") if p.suffix != ".lock")

    before = listing()
    changed = [*argv[2:], "--resume", "--learning_rate", "1e-3", "--seed", "7"]
    assert main(changed) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --resume:"), err
    assert "--learning_rate 0.003 then, 0.001 now" in err[0]
    assert "--seed 776 then, 7 now" in err[0]
    assert listing() == before  # the interrupted run as it was (the dead run's lock taken)
    # flags that change only what is written may differ
    assert main([*argv[2:], "--resume", "--keep_previous", "1"]) == 0
    assert not list((tmp_path / "out").glob(".*"))
