"""Long checks on real data with the shipped MiniLM (`python -m pytest -m slow`); CI skips."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from minidisc.main import execute

SHARED = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SHARED / "mrpc").is_dir(), reason=f"{SHARED / 'mrpc'} not present")
def test_minilm_finetunes_on_real_mrpc(tmp_path):
    res = execute(["--mode", "finetune", "--task_name", "mrpc", "--data_dir", str(SHARED),
                   "--output_dir", str(tmp_path), "--num_train_epochs", "1",
                   "--per_device_train_batch_size", "16", "--learning_rate", "3e-5",
                   "--log_interval", "58", "--use_cpu"])
    dev = res["final"]["dev"]
    assert dev["acc"] > 0.69 and dev["f1"] > 0.80, dev  # majority class: acc 0.684, F1 0.812


@pytest.mark.skipif(not Path("datasets/demo/train.tsv").is_file(), reason="demo task missing")
def test_demo_pipeline_runs(tmp_path):
    from minidisc.demo import run_demo

    summary = run_demo(["--output_dir", str(tmp_path), "--epochs", "1", "--use_cpu"])
    assert summary["teacher_metric"] > 0.7
    assert summary["student_sparsity"] == 90 and summary["encoder_params_kept"] < 0.15
