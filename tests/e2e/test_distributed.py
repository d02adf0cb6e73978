"""Under torchrun (2 CPU processes, gloo) a run trains, agrees across ranks, writes once, and
learns what one process learns from the same global batch (DDP and FSDP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import final_weights, torchrun, write_sst2_task

from minidisc.main import execute


def test_torchrun_two_processes(tiny_bert, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    out = tmp_path / "out"
    proc = torchrun(29517, "--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data),
                    "--output_dir", str(out), "--teacher_model_path", str(tiny_bert),
                    "--use_cpu", "--num_train_epochs", "2", "--per_device_train_batch_size",
                    "8", "--log_interval", "6", "--learning_rate", "3e-3")
    runs = list(out.iterdir())
    assert [p.name for p in runs] == ["sparsebert_cls_finetune_sst2"]
    res = json.loads((runs[0] / "results.json").read_text())
    # 96 examples over 2 ranks of batch 8 -> 6 steps per epoch on each rank
    assert res["train"]["steps"] == 12
    assert (runs[0] / "model" / "config.json").is_file()
    assert proc.stderr.count("step 6/12: dev acc") == 1  # only rank 0 logs


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(value, b[name], rtol=0, atol=1e-4, msg=name)


def _one_vs_two(tmp_path: Path, port: int, argv: list[str], batch: int,
                accum: int = 1) -> tuple[Path, Path]:
    """The same run on 1 process with batch `batch` and on 2 with `batch // 2` each. The
    train set is exactly one optimiser step (`accum` global batches), so every step sees the
    same examples whatever the shuffling (DistributedSampler on 2 processes, the loader's own
    on one). The fixture's sentences all have the same length: every rank averages its loss
    over as many tokens as the other, so the mean of the ranks is the global mean."""
    data = write_sst2_task(tmp_path / "data", n_train=batch * accum, n_dev=16)
    common = [*argv, "--task_name", "sst2", "--data_dir", str(data), "--use_cpu",
              "--learning_rate", "3e-3", "--warmup_proportion", "0",
              "--per_device_eval_batch_size", "16", "--num_grad_accum_steps", str(accum)]
    execute([*common, "--output_dir", str(tmp_path / "one"),
             "--per_device_train_batch_size", str(batch)])
    torchrun(port, *common, "--output_dir", str(tmp_path / "two"),
             "--per_device_train_batch_size", str(batch // 2))
    one, two = list((tmp_path / "one").iterdir()), list((tmp_path / "two").iterdir())
    assert len(two) == 1 and [p.name for p in two] == [p.name for p in one]
    return one[0], two[0]


def _same_minidisc(one: Path, two: Path) -> None:
    """Same TAs, best metrics and final dev score and weights; one run folder."""
    a, b = (json.loads((r / "results.json").read_text()) for r in (one, two))
    assert b["args"]["per_device_train_batch_size"] == 8
    assert [it["chosen"] for it in a["iterations"]] == [it["chosen"] for it in b["iterations"]]
    for x, y in zip(a["iterations"], b["iterations"]):
        assert x["best_metric"] == pytest.approx(y["best_metric"], abs=1e-6)
    assert a["final"]["dev"] == pytest.approx(b["final"]["dev"], abs=1e-6)
    _same_weights(final_weights(one), final_weights(two))
    # rank 0 wrote the one run folder: no stray staging or lock files
    assert sorted(p.name for p in two.parent.iterdir()) == [two.name]


def test_ddp_minidisc_matches_one_process(prunable_teacher, tmp_path):
    _same_minidisc(*_one_vs_two(tmp_path, 29527, [
        "--mode", "minidisc", "--teacher_model_path", str(prunable_teacher),
        "--target_iteration", "2", "--num_train_epochs", "3", "--log_interval", "3"],
        batch=16, accum=2))


def test_fsdp_minidisc_matches_one_process(prunable_teacher, tmp_path):
    """The sharded student is copied at every kept candidate (TA, best target) and the kept
    TA teaches the next iteration: each copy gathers the whole model on every process."""
    _same_minidisc(*_one_vs_two(tmp_path, 29547, [
        "--mode", "minidisc", "--teacher_model_path", str(prunable_teacher),
        "--target_iteration", "2", "--num_train_epochs", "3", "--log_interval", "1",
        "--sandwich_k", "1", "--distributed_strategy", "fsdp"], batch=16))


@pytest.mark.parametrize("argv, port", [
    (["--mode", "distill", "--layer_or_sparsity", "90S"], 29537),
    (["--mode", "maxidisc", "--layer_or_sparsity_path", "50,90S"], 29557),
])
def test_fsdp_distill_and_maxidisc_match_one_process(prunable_teacher, tmp_path, argv, port):
    """90S narrows some layers of the tiny teacher to no heads or neurons (their empty weights
    stay unsharded); maxidisc's second stage starts from the trained, sharded first one."""
    one, two = _one_vs_two(tmp_path, port, [
        *argv, "--teacher_model_path", str(prunable_teacher), "--num_train_epochs", "4",
        "--log_interval", "2", "--distributed_strategy", "fsdp"], batch=16)
    _same_weights(final_weights(one), final_weights(two))
    a, b = (json.loads((r / "results.json").read_text()) for r in (one, two))
    assert a["final"]["dev"] == pytest.approx(b["final"]["dev"], abs=1e-6)
    assert b["final"]["params"] == a["final"]["params"]
