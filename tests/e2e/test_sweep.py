"""minidisc.sweep on tiny models: the chain teacher -> sparsify -> students, run.py's folder
names, skipping finished runs, resuming an interrupted one, leaving a locked one alone, bad
SPECs, and the Slurm launcher through submitit's local executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST_FLAGS, ROOT, write_sst2_task

from minidisc.main import execute
from minidisc.sweep import expand, main, read_spec

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _shared(data: Path) -> dict:
    """conftest's FAST_FLAGS as a SPEC's flags mapping."""
    flags, rest = {}, list(FAST_FLAGS)
    while rest:
        name = rest.pop(0)[2:]
        flags[name] = rest.pop(0) if rest and not rest[0].startswith("--") else True
    return {"task_name": "sst2", "data_dir": str(data), "num_train_epochs": 1, **flags}


def _spec(tmp: Path, body: dict) -> Path:
    f = tmp / "spec.json"
    f.write_text(json.dumps(body))
    return f


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_sst2_task(tmp_path_factory.mktemp("sweep") / "data", n_train=48, n_dev=16)


@pytest.fixture(scope="module")
def teacher(tiny_bert, data, tmp_path_factory) -> Path:
    """A sparsified tiny teacher, for the SPECs that start from a finished teacher."""
    out = tmp_path_factory.mktemp("sweep_teacher")
    common = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(out),
              *FAST_FLAGS]
    execute(["--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert),
             "--num_train_epochs", "4"])
    execute(["--mode", "sparsify", *common, "--teacher_model_path",
             str(out / "sparsebert_cls_finetune_sst2")])
    return out / "sparsebert_cls_sparsify_sst2"


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_local_sweep_runs_the_chain_then_skips_it(tiny_bert, data, tmp_path, caplog):
    out = tmp_path / "runs"
    spec = _spec(tmp_path, {
        "output_dir": str(out), "flags": _shared(data),
        "teacher": {"flags": {"teacher_model_path": str(tiny_bert), "num_train_epochs": 3}},
        "methods": {"direct": {"mode": "distill", "flags": {"layer_or_sparsity": "50S"}},
                    "path": {"mode": "maxidisc",
                             "flags": {"layer_or_sparsity_path": ["30,50S"]}}},
        "seeds": [1, 2]})
    caplog.set_level("INFO", logger="minidisc.sweep")
    assert main([str(spec), "--jobs", "2"]) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted([
        "sparsebert_cls_finetune_sst2", "sparsebert_cls_sparsify_sst2",
        *(f"sparsebert_cls_distill_direct-s{s}_50S_sst2" for s in (1, 2)),
        *(f"sparsebert_cls_maxidisc_path-s{s}_30-50S_sst2" for s in (1, 2))])
    distill = _results(out / "sparsebert_cls_distill_direct-s2_50S_sst2")
    assert distill["args"]["seed"] == 2 and distill["args"]["num_train_epochs"] == 1
    assert distill["teacher"]["path"].startswith(str(out / "sparsebert_cls_sparsify_sst2"))
    assert _results(out / "sparsebert_cls_finetune_sst2")["args"]["num_train_epochs"] == 3
    assert sum("finished" in r.message for r in caplog.records) == 6

    mtimes = {p: p.stat().st_mtime for p in out.glob("*/results.json")}
    caplog.clear()
    assert main([str(spec)]) == 0  # everything finished: nothing runs again
    assert {p: p.stat().st_mtime for p in out.glob("*/results.json")} == mtimes
    assert sum("done, skipped" in r.message for r in caplog.records) == 6
    assert not any("starting" in r.message for r in caplog.records)


def test_grid_names_and_order(tmp_path, data):
    """A list value runs once per value; run folders are run.py's names with the method and
    seed as suffix; a flag run_name does not spell goes into the suffix."""
    spec = _spec(tmp_path, {
        "output_dir": str(tmp_path / "o"), "flags": _shared(data), "teacher": "t",
        "seeds": [5, 6],
        "methods": {"path": {"mode": "maxidisc",
                             "flags": {"layer_or_sparsity_path": ["50,90S", "80,90S"]}},
                    "lr": {"mode": "distill", "flags": {"layer_or_sparsity": "90S",
                                                        "learning_rate": [0.001, 0.01]}}}})
    runs = expand(spec, read_spec(spec))
    assert [r.name for r in runs] == [
        "sparsebert_cls_sparsify_sst2",
        "sparsebert_cls_maxidisc_path-s5_50-90S_sst2",
        "sparsebert_cls_maxidisc_path-s5_80-90S_sst2",
        "sparsebert_cls_distill_lr-learning_rate0.001-s5_90S_sst2",
        "sparsebert_cls_distill_lr-learning_rate0.01-s5_90S_sst2",
        "sparsebert_cls_maxidisc_path-s6_50-90S_sst2",
        "sparsebert_cls_maxidisc_path-s6_80-90S_sst2",
        "sparsebert_cls_distill_lr-learning_rate0.001-s6_90S_sst2",
        "sparsebert_cls_distill_lr-learning_rate0.01-s6_90S_sst2"]
    assert runs[1].needs == ["sparsify"] and runs[0].needs == []
    assert "--teacher_model_path" in runs[0].argv and runs[1].argv[
        runs[1].argv.index("--teacher_model_path") + 1] == str(runs[0].folder)


def _kill_after_a_saved_state(argv: list[str], out: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(out.glob(".*.staging-*/state/trainer.pt")):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=300) == 128 + signal.SIGTERM


def test_interrupted_run_is_resumed_and_a_locked_one_left_alone(teacher, data, tmp_path,
                                                                caplog):
    out = tmp_path / "runs"
    flags = {**_shared(data), "num_train_epochs": 6, "log_interval": 2}
    spec = _spec(tmp_path, {
        "output_dir": str(out), "flags": flags, "teacher": str(teacher), "sparsify": False,
        "methods": {"direct": {"mode": "distill", "flags": {"layer_or_sparsity": "50S"}}},
        "seeds": [1, 2]})
    runs = expand(spec, read_spec(spec))
    one, two = (r.folder for r in runs)
    _kill_after_a_saved_state(runs[0].argv, out)  # seed 1: stopped by SIGTERM, resumable
    lock = two.with_name(f".{two.name}.lock")  # seed 2: "another process" writes it
    lock.write_text(f"{os.getpid()}\n")
    caplog.set_level("INFO", logger="minidisc.sweep")
    assert main([str(spec)]) == 1  # not everything finished
    said: dict[str, str] = {}
    for r in caplog.records:
        if r.name == "minidisc.sweep" and r.message.startswith("sparsebert"):
            name = r.message.split(" (")[0]
            said[name] = said.get(name, "") + r.message.split(": ", 1)[1] + "; "
    assert said[one.name] == "resuming; finished; "
    assert "busy" in said[two.name] and str(os.getpid()) in said[two.name]
    assert _results(one)["args"]["resume"] is True
    assert not two.exists() and lock.read_text().strip() == str(os.getpid())
    lock.unlink()
    caplog.clear()
    assert main([str(spec)]) == 0
    assert _results(two)["args"]["seed"] == 2


def test_a_run_stopped_by_a_signal_stops_the_sweep(teacher, data, tmp_path, caplog):
    """A run that ends with 143 (SIGTERM: a preemption, a kill) saved a resumable state; the
    sweep starts nothing after it (the machine is going away) and exits 1."""
    from concurrent.futures import Future

    from minidisc.sweep import sweep

    spec = _spec(tmp_path, {
        "output_dir": str(tmp_path / "runs"), "flags": _shared(data), "teacher": str(teacher),
        "sparsify": False, "seeds": [1, 2, 3],
        "methods": {"direct": {"mode": "distill", "flags": {"layer_or_sparsity": "50S"}}}})
    runs = expand(spec, read_spec(spec))
    started = []

    class Killed:  # a launcher whose first job is stopped by SIGTERM
        slots = 1

        def submit(self, run, argv):
            started.append(run.name)
            job: Future = Future()
            job.set_result(128 + signal.SIGTERM)
            return job

    caplog.set_level("INFO", logger="minidisc.sweep")
    final = sweep(runs, Killed(), poll_s=0)
    assert started == [runs[0].name]
    assert final == {runs[0].name: "interrupted"}
    assert any("interrupted by a signal (exit status 143)" in r.message for r in caplog.records)


def test_slurm_launcher_through_submitits_local_executor(teacher, data, tmp_path):
    out = tmp_path / "runs"
    spec = _spec(tmp_path, {
        "output_dir": str(out), "flags": _shared(data), "teacher": str(teacher),
        "sparsify": False, "seeds": [3],
        "methods": {"mini": {"mode": "minidisc",
                             "flags": {"target_sparsity": 50, "lam": 0.2, "sandwich_k": 1}}}})
    assert main([str(spec), "--launcher", "slurm", "--cluster", "local", "--cpus_per_job", "1",
                 "--gpus_per_job", "0", "--poll_s", "0.2"]) == 0
    run = _results(out / "sparsebert_cls_minidisc_mini-s3_50S_lam0.2_sst2")
    assert run["args"]["seed"] == 3 and run["iterations"]
    logs = list((out / ".submitit").rglob("*_log.out"))
    assert logs  # the job ran through submitit, which kept its logs


@pytest.mark.parametrize("body, key", [
    ({"flags": {}, "methods": {"d": {"mode": "distill"}}, "seeds": [1]}, "output_dir"),
    ({"output_dir": "o", "methods": {"d": {"mode": "distill"}}, "seeds": []}, "seeds"),
    ({"output_dir": "o", "methods": {"d": {"mode": "distill"}}, "seeds": [1, 1]}, "seeds"),
    ({"output_dir": "o", "methods": {"d": {"mode": "prune"}}, "seeds": [1]},
     "methods.d.mode"),
    ({"output_dir": "o", "methods": {"d": {"mode": "distill", "flags": {"seed": 3}}},
      "seeds": [1]}, "methods.d.flags.seed"),
    ({"output_dir": "o", "methods": {"d": {"mode": "distill",
                                           "flags": {"layer_or_sparsity": "9Q"}}},
      "seeds": [1]}, "methods.d.s1: --layer_or_sparsity"),
    ({"output_dir": "o", "methods": {"d": {"mode": "distill"}}, "seeds": [1], "seed": 2},
     "seed: unknown key"),
    ({"output_dir": "o", "teacher": 3, "methods": {"d": {"mode": "distill"}}, "seeds": [1]},
     "teacher"),
    ({"output_dir": "o", "teacher": None, "methods": {"d": {"mode": "distill"}},
      "seeds": [1]}, "teacher: missing"),
])
def test_bad_spec_is_one_error_line_naming_the_key(body, key, data, tmp_path, capsys):
    body.setdefault("teacher", str(tmp_path / "teacher"))
    body.setdefault("flags", {"task_name": "sst2", "data_dir": str(data)})
    body["flags"].setdefault("task_name", "sst2")
    body["flags"].setdefault("data_dir", str(data))
    spec = _spec(tmp_path, body)
    assert main([str(spec), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f": {key}" in err[0], err
    assert not (tmp_path / "o").exists()


def test_unreadable_spec(tmp_path, capsys):
    f = tmp_path / "spec.yaml"
    f.write_text("output_dir: o\nmethods: [unclosed\n")
    assert main([str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {f}:")


@pytest.mark.parametrize("flags, name", [(["--jobs", "0"], "--jobs"),
                                         (["--jobs", "x"], "--jobs"),
                                         (["--launcher", "pbs"], "--launcher")])
def test_bad_flag_is_one_error_line(flags, name, tmp_path, capsys):
    assert main([str(_spec(tmp_path, {})), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]
