"""Two runs, one folder: a run name is written by one live process at a time.

`<output_dir>/.<run name>.lock` holds the writer's pid; a second run is refused (one line, exit
2) while that process lives, a dead process's lock is taken over, and the lock goes when the
run ends, whether it succeeded or failed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys

import pytest
from conftest import FAST_FLAGS, write_sst2_task

from minidisc.errors import MiniDiscError
from minidisc.main import main
from minidisc.training import outputs
from minidisc.training.outputs import RunFolder

RUN = "sparsebert_cls_finetune_sst2"


@pytest.fixture
def sleeper():
    """A live process that is not us: the pid a concurrent run would hold."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process any more
    return proc.pid


def test_lock_is_held_while_the_run_writes_and_removed_after(tmp_path):
    final = tmp_path / "out" / "run"
    lock = tmp_path / "out" / ".run.lock"
    with RunFolder(final) as staging:
        assert lock.read_text().strip() == str(os.getpid())
        (staging / "x").write_text("1")
    assert not lock.exists() and (final / "x").is_file()
    with pytest.raises(RuntimeError), RunFolder(final):
        assert lock.exists()
        raise RuntimeError("a failing run")
    assert not lock.exists()
    assert sorted(p.name for p in final.parent.iterdir()) == ["run"]


def test_a_second_run_of_the_same_name_is_refused_in_the_same_process(tmp_path):
    final = tmp_path / "run"
    with RunFolder(final):
        with pytest.raises(MiniDiscError, match=f"being written by process {os.getpid()}"):
            RunFolder(final).__enter__()
        with RunFolder(tmp_path / "other"):  # another run name is not blocked
            pass
    assert not (tmp_path / ".run.lock").exists()


def _hold(final, ready, release):
    with RunFolder(final):
        ready.set()
        release.wait(60)


def test_a_second_process_is_refused_until_the_first_ends(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    final = tmp_path / "run"
    child = ctx.Process(target=_hold, args=(final, ready, release))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(MiniDiscError) as info:
            RunFolder(final).__enter__()
        msg = str(info.value)
        assert f"being written by process {child.pid}" in msg and "\n" not in msg
        assert msg.startswith(f"--output_dir {tmp_path}")
    finally:
        release.set()
        child.join(60)
    assert child.exitcode == 0
    with RunFolder(final):
        pass
    assert final.is_dir() and not (tmp_path / ".run.lock").exists()


def test_an_empty_or_garbage_lock_is_stale_after_a_moment(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "LOCK_SETTLE_S", 0.1)
    for content in ("", "not a pid\n"):
        (tmp_path / ".run.lock").write_text(content)
        with RunFolder(tmp_path / "run"):
            assert (tmp_path / ".run.lock").read_text().strip() == str(os.getpid())
        assert not (tmp_path / ".run.lock").exists()


def test_run_refused_while_a_live_process_holds_the_lock_then_stale_lock_taken_over(
        tiny_bert, tmp_path, capsys, caplog, sleeper):
    data = write_sst2_task(tmp_path / "data", n_train=32, n_dev=16)
    out = tmp_path / "out"
    out.mkdir()
    lock = out / f".{RUN}.lock"
    lock.write_text(f"{sleeper.pid}\n")
    argv = ["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data),
            "--output_dir", str(out), "--teacher_model_path", str(tiny_bert), *FAST_FLAGS,
            "--num_train_epochs", "1"]

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: --output_dir {out}: run {RUN} is being written by "
                             f"process {sleeper.pid}"), err
    assert str(lock) in err[0]
    # nothing of ours was written, and the live run's lock is untouched
    assert [p.name for p in out.iterdir()] == [lock.name]
    assert lock.read_text().strip() == str(sleeper.pid)

    lock.write_text(f"{_dead_pid()}\n")
    with caplog.at_level(logging.WARNING, logger="minidisc.training.outputs"):
        assert main(argv) == 0, capsys.readouterr().err
    assert "stale lock" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == [RUN]
    assert (out / RUN / "results.json").is_file()
