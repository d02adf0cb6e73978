"""--report_to: the curves a run writes while it trains, read back as TensorBoard reads them."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import textwrap
import types
from pathlib import Path

import pytest
from conftest import run_mode, save_head_teacher, write_sst2_task
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minidisc.main import main


@pytest.fixture(scope="module")
def teacher(tiny_bert, tmp_path_factory) -> Path:
    """A tiny teacher with a head and a sparsity map, built directly (the curves need any
    prunable teacher, not a good one)."""
    return save_head_teacher(tiny_bert, tmp_path_factory.mktemp("report_to") / "teacher",
                             prunable=True)


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def _steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


def _values(acc: EventAccumulator, tag: str) -> list[float]:
    return [e.value for e in acc.Scalars(tag)]


def test_minidisc_curves_per_candidate(teacher, tmp_path, caplog):
    data, out = write_sst2_task(tmp_path / "data"), tmp_path / "out"
    with caplog.at_level("INFO", logger="minidisc"):
        res = run_mode("minidisc", data, out, teacher, "--log_interval", "3", "--report_to",
                       "tensorboard")
    if len(res["iterations"]) == 1:  # the search kept the target: no final iteration follows
        assert "the final iteration distils" not in caplog.text
    run = out / "sparsebert_cls_minidisc_90S_lam0.2_sst2"
    board = run / "tensorboard"
    its = res["iterations"]
    assert sorted(p.name for p in board.iterdir() if p.is_dir()) == [
        f"minidisc_iteration_{r['iteration']}" for r in its]
    for record in its:
        acc = _events(board / f"minidisc_iteration_{record['iteration']}")
        steps = list(range(1, record["steps"] + 1))
        evals = [h["step"] for h in record["history"]]
        cands = record["candidates"]
        tags = set(acc.Tags()["scalars"])
        for s in cands:  # every candidate trains every step (--sandwich_k all)
            assert _steps(acc, f"train/loss/{s}S") == steps
        for tag in ("train/loss", "train/lr", "train/grad_norm"):
            assert _steps(acc, tag) == steps
        # the step's loss is the mean of its candidates' losses
        per_candidate = [_values(acc, f"train/loss/{s}S") for s in cands]
        for i, mean in enumerate(_values(acc, "train/loss")):
            assert mean == pytest.approx(sum(c[i] for c in per_candidate) / len(cands),
                                         rel=1e-5)
        assert _values(acc, "train/lr")[0] == pytest.approx(3e-3)  # no warmup: the peak
        assert all(v > 0 for v in _values(acc, "train/grad_norm"))
        scored = [s for s in cands if s in record["history"][-1]["dev"]]
        for s in scored:
            assert _values(acc, f"dev/acc/{s}S") == pytest.approx(
                [h["dev"][s] for h in record["history"]])
            assert _steps(acc, f"tradeoff/{s}S") == evals
        assert _steps(acc, "eval/time_s") == evals
        assert {f"dev/acc/{s}S" for s in scored} <= tags
    root = _events(board)
    assert _values(root, "minidisc/chosen_sparsity") == [r["chosen"] for r in its]
    assert _steps(root, "minidisc/chosen_sparsity") == [r["iteration"] for r in its]
    choices = root.Tensors("minidisc/choice/text_summary")
    assert [c.step for c in choices] == [r["iteration"] for r in its]
    assert choices[0].tensor_proto.string_val[0].decode().startswith("iteration 1: chose")
    config = root.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    saved = json.loads((run / "results.json").read_text())
    assert json.loads(textwrap.dedent(config)) == saved["args"]  # the resolved flags
    assert _values(root, "final/dev/acc") == [pytest.approx(res["final"]["dev"]["acc"])]
    # the report's floor: the dev metrics of always answering the majority class
    majority = res["majority_class"]
    share = sum(line.endswith(f"\t{majority['label']}") for line in
                (data / "sst2" / "dev.tsv").read_text().splitlines()[1:]) / 32
    assert majority["dev"]["acc"] == pytest.approx(share) and share >= 0.5


@pytest.mark.parametrize("missing", ["tensorboard", "wandb"])
def test_missing_package_is_one_error_line(teacher, tmp_path, capsys, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    data, out = write_sst2_task(tmp_path / "data"), tmp_path / "out"
    code = main(["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data),
                 "--output_dir", str(out), "--teacher_model_path", str(teacher),
                 "--report_to", missing, "--use_cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --report_to {missing}: the {missing} package is not "
                             "installed") and f"minidisc[{missing}]" in err[0]
    assert not out.exists()


class _FakeWandbRun:
    """What the reporter calls of a wandb run, recorded."""

    def __init__(self):
        self.rows, self.metrics, self.summary, self.finished = [], {}, {}, False
        self.config = types.SimpleNamespace(data={})
        self.config.update = lambda d, allow_val_change=False: self.config.data.update(d)

    def define_metric(self, name, step_metric):
        self.metrics[name] = step_metric

    def log(self, row):
        self.rows.append(row)

    def finish(self):
        self.finished = True


def test_wandb_gets_the_same_curves(teacher, tmp_path, monkeypatch):
    run = _FakeWandbRun()
    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: run
    monkeypatch.setitem(sys.modules, "wandb", fake)
    data, out = write_sst2_task(tmp_path / "data"), tmp_path / "out"
    res = run_mode("finetune", data, out, teacher, "--log_interval", "3", "--report_to",
                   "wandb")
    steps = res["train"]["steps"]
    assert run.metrics == {"finetune/*": "finetune/step"}
    train = [r for r in run.rows if "finetune/train/loss" in r]
    assert [r["finetune/step"] for r in train] == list(range(1, steps + 1))
    evals = [r for r in run.rows if "finetune/dev/acc" in r]
    assert [r["finetune/dev/acc"] for r in evals] == pytest.approx(
        [h["dev"]["acc"] for h in res["train"]["history"]])
    assert run.config.data["report_to"] == "wandb"
    assert run.summary["final/dev/acc"] == pytest.approx(res["final"]["dev"]["acc"])
    assert run.finished
    assert not (out / "sparsebert_cls_finetune_sst2" / "tensorboard").exists()
