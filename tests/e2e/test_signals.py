"""Ctrl-C and SIGTERM in every part of a run: one `error:` line, exit 130 / 143, nothing
half-written, an earlier run folder of the same name untouched. Writes finish first (the
signal waits for them); anything else (evaluation, sparsify's importance pass) stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, sparsify_argv, write_sst2_task

from minidisc.main import execute
from minidisc.training.state import Interrupted, signals_deferred, stop_on_signals

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
RUN = "sparsebert_cls_sparsify_sst2"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_sparsify_and_leaves_the_earlier_run(head_teacher, tmp_path, sig):
    out = tmp_path / "out"
    execute(sparsify_argv(write_sst2_task(tmp_path / "small", n_dev=16), out, head_teacher))
    # a dev set large enough that the importance pass and its evaluations take a while
    argv = sparsify_argv(write_sst2_task(tmp_path / "data", n_dev=800), out, head_teacher)
    earlier = (out / RUN / "results.json").read_text()
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(f".{RUN}.staging-*")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-1] == (f"error: interrupted by {sig.name}: no state was saved yet "
                         "(nothing to resume)"), lines[-3:]
    assert sum(line.startswith("error:") for line in lines) == 1
    assert "Traceback" not in err
    # nothing of the stopped run is left; the earlier run is as it was
    assert sorted(p.name for p in out.iterdir()) == [RUN]
    assert (out / RUN / "results.json").read_text() == earlier
    assert json.loads(earlier)["final"]["path"] == "model"


def test_writes_finish_before_the_signal_takes_effect():
    with pytest.raises(Interrupted) as stopped, stop_on_signals() as flag:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run: the write goes on
            written = True
        raise AssertionError("not stopped after the write")  # pragma: no cover
    assert written and flag.signum == signal.SIGTERM
    assert stopped.value.code == 143 and not stopped.value.keeps_state
    with pytest.raises(Interrupted) as stopped, stop_on_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        raise AssertionError("outside a write the signal stops at once")  # pragma: no cover
    assert stopped.value.code == 130
