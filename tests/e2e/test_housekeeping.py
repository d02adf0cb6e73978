"""Housekeeping: under torchrun only the main process writes (sparsify, which never enters
the training loop, included), and `--keep_previous N` bounds the `.prev-<time>` copies of
earlier runs, oldest removed first, saying which it removed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from conftest import write_sst2_task
from test_distributed import torchrun

from minidisc.main import execute


def _sparsify(data: Path, out: Path, teacher: Path, *extra: str) -> list[str]:
    return ["--mode", "sparsify", "--task_name", "sst2", "--data_dir", str(data),
            "--output_dir", str(out), "--teacher_model_path", str(teacher), "--use_cpu",
            "--per_device_eval_batch_size", "16", *extra]


def test_sparsify_under_torchrun_writes_once(head_teacher, tmp_path):
    data = write_sst2_task(tmp_path / "data", n_dev=16)
    out = tmp_path / "out"
    torchrun(29567, *_sparsify(data, out, head_teacher))
    # one run folder, no stray staging folder (or lock) of the second process
    assert sorted(p.name for p in out.iterdir()) == ["sparsebert_cls_sparsify_sst2"]
    run = out / "sparsebert_cls_sparsify_sst2"
    assert (run / "model" / "config.json").is_file()
    assert json.loads((run / "results.json").read_text())["final"]["path"] == "model"


def test_keep_previous_bounds_the_earlier_runs(head_teacher, tmp_path, caplog):
    data = write_sst2_task(tmp_path / "data", n_dev=16)
    out = tmp_path / "out"
    name = "sparsebert_cls_sparsify_sst2"
    seen: list[set[str]] = []
    for _ in range(4):
        with caplog.at_level(logging.INFO, logger="minidisc"):
            caplog.clear()
            execute(_sparsify(data, out, head_teacher, "--keep_previous", "2"))
        seen.append({p.name for p in out.glob(f"{name}.prev-*")})
    assert [len(s) for s in seen] == [0, 1, 2, 2]
    (removed,) = seen[2] - seen[3]  # the oldest of the two the third run left
    assert removed == min(seen[2], key=lambda n: (len(n), n))
    said = [r.getMessage() for r in caplog.records if "removed the earlier run" in r.getMessage()]
    assert len(said) == 1 and removed in said[0] and "--keep_previous 2" in said[0]
    execute(_sparsify(data, out, head_teacher, "--keep_previous", "0"))
    assert not list(out.glob(f"{name}.prev-*")) and (out / name / "results.json").is_file()
