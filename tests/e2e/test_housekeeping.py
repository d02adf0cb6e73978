"""Housekeeping: under torchrun only the main process writes (sparsify, which never enters
the training loop, included), and `--keep_previous N` bounds the `.prev-<time>` copies of
earlier runs, oldest removed first, saying which it removed."""

from __future__ import annotations

import json
import logging

from conftest import sparsify_argv, torchrun, write_sst2_task

from minidisc.main import execute


def test_sparsify_under_torchrun_writes_once(head_teacher, tmp_path):
    data = write_sst2_task(tmp_path / "data", n_dev=16)
    out = tmp_path / "out"
    torchrun(29567, *sparsify_argv(data, out, head_teacher))
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
            execute(sparsify_argv(data, out, head_teacher, "--keep_previous", "2"))
        seen.append({p.name for p in out.glob(f"{name}.prev-*")})
    assert [len(s) for s in seen] == [0, 1, 2, 2]
    (removed,) = seen[2] - seen[3]  # the oldest of the two the third run left
    assert removed == min(seen[2], key=lambda n: (len(n), n))
    said = [r.getMessage() for r in caplog.records if "removed the earlier run" in r.getMessage()]
    assert len(said) == 1 and removed in said[0] and "--keep_previous 2" in said[0]
    execute(sparsify_argv(data, out, head_teacher, "--keep_previous", "0"))
    assert not list(out.glob(f"{name}.prev-*")) and (out / name / "results.json").is_file()
