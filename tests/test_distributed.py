"""Under torchrun (2 CPU processes, gloo) a run trains, agrees across ranks, and writes once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_sst2_task

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes(tiny_bert, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", str(ROOT / "run.py"), "--mode", "finetune",
           "--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(out),
           "--teacher_model_path", str(tiny_bert), "--use_cpu", "--num_train_epochs", "2",
           "--per_device_train_batch_size", "8", "--log_interval", "6",
           "--learning_rate", "3e-3"]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list(out.iterdir())
    assert [p.name for p in runs] == ["sparsebert_cls_finetune_sst2"]
    res = json.loads((runs[0] / "results.json").read_text())
    # 96 examples over 2 ranks of batch 8 -> 6 steps per epoch on each rank
    assert res["train"]["steps"] == 12
    assert (runs[0] / "model" / "config.json").is_file()
    assert proc.stderr.count("step 6/12: dev acc") == 1  # only rank 0 logs
