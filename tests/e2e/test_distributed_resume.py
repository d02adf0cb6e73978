"""--resume under torchrun (2 CPU processes, gloo): every rank resumes from rank 0's saved
state; a run killed (rank 0 as by SIGKILL, then all its processes) after a saved state and
resumed ends as the uninterrupted run: same TAs, metrics and weights."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import ENV, ROOT, final_weights, torchrun, write_sst2_task


def _killed_after_a_state(port: int, *args: str) -> None:
    """torchrun in its own session; rank 0 dies (os._exit, as under SIGKILL) right after its
    second saved state, then SIGKILL goes to every process of the session still there."""
    from minidisc.files import CRASH_AT

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), str(ROOT / "run.py"), *args]
    proc = subprocess.Popen(cmd, env={**ENV, CRASH_AT: "trainer.pt.done:2"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode != 0, err[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("strategy, ports", [("ddp", (29577, 29587, 29597)),
                                             ("fsdp", (29607, 29617, 29627))])
def test_minidisc_killed_and_resumed_equals_uninterrupted(prunable_teacher, tmp_path,
                                                          strategy, ports):
    """FSDP: the sharded model and AdamW state go through torch.distributed.checkpoint."""
    data = write_sst2_task(tmp_path / "data", n_train=64, n_dev=16)
    common = ["--mode", "minidisc", "--teacher_model_path", str(prunable_teacher),
              "--task_name", "sst2", "--data_dir", str(data), "--use_cpu",
              "--target_iteration", "2", "--num_train_epochs", "3", "--log_interval", "2",
              "--learning_rate", "3e-3", "--warmup_proportion", "0",
              "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
              "--distributed_strategy", strategy]
    torchrun(ports[0], *common, "--output_dir", str(tmp_path / "a"))
    _killed_after_a_state(ports[1], *common, "--output_dir", str(tmp_path / "b"))
    assert list((tmp_path / "b").glob(".*.staging-*/state/trainer.pt"))
    assert not [p for p in (tmp_path / "b").iterdir() if not p.name.startswith(".")]
    torchrun(ports[2], *common, "--output_dir", str(tmp_path / "b"), "--resume")
    (one,), (two,) = ([p for p in (tmp_path / x).iterdir() if not p.name.startswith(".")]
                      for x in ("a", "b"))
    a, b = (json.loads((r / "results.json").read_text()) for r in (one, two))
    assert [it["chosen"] for it in a["iterations"]] == [it["chosen"] for it in b["iterations"]]
    for x, y in zip(a["iterations"], b["iterations"], strict=True):
        assert x["best_metric"] == pytest.approx(y["best_metric"], abs=1e-6)
    assert a["final"]["dev"] == pytest.approx(b["final"]["dev"], abs=1e-6)
    wa, wb = final_weights(one), final_weights(two)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-6, msg=name)
    # the resumed run took the interrupted one's folder whole: nothing else is left
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [two.name]
