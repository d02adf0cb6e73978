"""finetune and sparsify end to end on tiny fixtures, and the exit-2 error paths."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FAST_FLAGS, write_sst2_task

from minidisc.main import execute, main
from minidisc.models.sparse_bert import SparseBertForSequenceClassification


def _finetune(tiny_bert, data_dir, out, *extra):
    return execute(["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data_dir),
                    "--output_dir", str(out), "--teacher_model_path", str(tiny_bert),
                    "--num_train_epochs", "30", "--num_patience_epochs", "30", *FAST_FLAGS,
                    *extra])


@pytest.fixture(scope="module")
def finetuned(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    data = write_sst2_task(root / "data")
    res = _finetune(tiny_bert, data, root / "out", "--do_train", "--do_infer")
    return root, data, res


def test_finetune_learns_fixture_and_writes_outputs(finetuned):
    root, _, res = finetuned
    run = root / "out" / "sparsebert_cls_finetune_sst2"
    assert res["final"]["dev"]["acc"] >= 0.9
    assert (run / "model" / "config.json").is_file()
    assert (run / "model" / "tokenizer.json").is_file()
    saved = json.loads((run / "results.json").read_text())
    assert saved["args"]["learning_rate"] == 3e-3
    assert saved["train"]["history"], "evaluations are recorded"
    sub = (run / "SST-2.tsv").read_text().splitlines()
    assert sub[0] == "index\tprediction" and len(sub) == 9
    assert {line.split("\t")[1] for line in sub[1:]} <= {"0", "1"}
    assert not [p for p in (root / "out").iterdir() if "staging" in p.name]


@pytest.fixture(scope="module")
def sparsified(finetuned):
    """The finetuned fixture model sparsified: (results, run folder)."""
    root, data, _ = finetuned
    run = root / "out" / "sparsebert_cls_finetune_sst2"
    res = execute(["--mode", "sparsify", "--task_name", "sst2", "--data_dir", str(data),
                   "--output_dir", str(root / "out"), "--teacher_model_path", str(run),
                   "--use_cpu"])
    return res, root / "out" / "sparsebert_cls_sparsify_sst2"


def test_sparsify_reorders_exactly_and_stores_map(finetuned, sparsified):
    res, run = sparsified
    assert res["dev_before_reorder"] == pytest.approx(finetuned[2]["final"]["dev"])
    assert res["dev_before_reorder"] == pytest.approx(res["dev_after_reorder"], abs=1e-9)
    model = SparseBertForSequenceClassification.from_pretrained(run / "model")
    assert model.config.sparsity == 0 and "90" in model.config.sparsity_map
    params = res["params_by_sparsity"]
    assert params["90"]["encoder"] < params["50"]["encoder"] < params["0"]["encoder"]


def test_rerun_keeps_previous_run(head_teacher, sst2_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(sst2_dir),
            "--output_dir", str(out), "--teacher_model_path", str(head_teacher), "--use_cpu",
            "--do_test"]
    execute(args)
    execute(args)
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "sparsebert_cls_finetune_sst2" and names[1].startswith(
        "sparsebert_cls_finetune_sst2.prev-")


def _fails(capsys, args, message, out):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case, message", [
    ("unknown_task", "--task_name 'nope' is unknown"),
    ("missing_folder", "task folder not found"),
    ("missing_file", "dev.tsv: file not found"),
    ("bad_columns", "dev.tsv:3: malformed row"),
    ("bad_label", "dev.tsv:2: bad label '7'"),
    ("unknown_model_type", "invalid choice: 'bigbert'"),
    ("bad_metric", "--selection_metric 'f1' is not reported for task sst2"),
    ("bad_teacher", "--teacher_model_path"),
    ("untrained_head_minidisc", "its task head is not trained: finetune it first"),
    ("sparsify_needs_teacher", "--mode sparsify needs --teacher_model_path"),
])
def test_bad_input_exits_2(case, message, tiny_bert, sst2_dir, tmp_path, capsys):
    out = tmp_path / "out"
    task = sst2_dir / "sst2"
    base = {"--mode": "finetune", "--task_name": "sst2", "--data_dir": str(sst2_dir),
            "--output_dir": str(out), "--teacher_model_path": str(tiny_bert)}
    if case == "unknown_task":
        base["--task_name"] = "nope"
    elif case == "missing_folder":
        base["--data_dir"] = str(tmp_path / "nowhere")
    elif case == "missing_file":
        (task / "dev.tsv").unlink()
    elif case == "bad_columns":
        (task / "dev.tsv").write_text("sentence\tlabel\ngood film\t1\nbad\t0\textra\n")
    elif case == "bad_label":
        (task / "dev.tsv").write_text("sentence\tlabel\ngood film\t7\n")
    elif case == "unknown_model_type":
        base["--model_type"] = "bigbert"
    elif case == "bad_metric":
        base["--selection_metric"] = "f1"
    elif case == "bad_teacher":
        base["--teacher_model_path"] = str(tmp_path / "no_model")
    elif case == "untrained_head_minidisc":
        base["--mode"] = "minidisc"
    elif case == "sparsify_needs_teacher":
        base["--mode"] = "sparsify"
        del base["--teacher_model_path"]
    args = [x for kv in base.items() for x in kv] + ["--use_cpu"]
    _fails(capsys, args, message, out)


def test_sparsity_not_in_map_exits_2(finetuned, sparsified, tmp_path, capsys):
    _, data, _ = finetuned
    _, teacher = sparsified
    out = tmp_path / "out"
    _fails(capsys, ["--mode", "distill", "--task_name", "sst2", "--data_dir", str(data),
                    "--output_dir", str(out), "--teacher_model_path", str(teacher),
                    "--layer_or_sparsity", "33S", "--use_cpu"], "not in the sparsity map", out)


def test_cuda_only_when_available():
    from minidisc.training.runtime import setup

    rt = setup(use_cpu=True, use_fp16=True)
    assert rt.device == torch.device("cpu") and not rt.fp16
