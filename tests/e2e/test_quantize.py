"""int8 export (onnxruntime dynamic quantization): the int8 graph is scored on the task's dev
set beside the fp32 one, the metrics are printed and recorded, and a drop beyond
--max_metric_drop writes nothing and exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from conftest import run_mode, write_sst2_task
from onnx import TensorProto

from minidisc.data import pipeline
from minidisc.data.tasks import TASKS
from minidisc.export import main, sidecar
from minidisc.models import load_model, resolve_max_length
from minidisc.training.evaluate import evaluate
from minidisc.training.runtime import setup


@pytest.fixture(scope="module")
def finetuned(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny BERT finetuned on the fixture SST-2 task (it learns it), and the data folder."""
    root = tmp_path_factory.mktemp("int8")
    data = write_sst2_task(root / "data")
    run_mode("finetune", data, root / "out", tiny_bert, "--do_train", "--num_train_epochs", "30",
             "--num_patience_epochs", "2")
    return root / "out" / "sparsebert_cls_finetune_sst2", data


def _torch_dev_acc(ckpt: Path, data: Path) -> float:
    task = TASKS["sst2"]
    tok = pipeline.load_tokenizer(ckpt)
    split = pipeline.load_split(task, data, "dev", tok, resolve_max_length(tok, None))
    model = load_model("sparsebert_cls", ckpt, task, "student")
    return evaluate(model, split, pipeline.eval_loader(split, task, tok, 32), task,
                    setup(True, False))["acc"]


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_scored_on_dev_and_recorded(finetuned, per_channel, tmp_path, capsys):
    run, data = finetuned
    out = tmp_path / "deploy" / "student.onnx"
    flags = ["--per_channel"] if per_channel else []
    assert main([str(run), "--onnx", str(out), "--quantize", "int8", "--data_dir", str(data),
                 *flags]) == 0
    record = json.loads(sidecar(out).read_text())
    assert record["task"] == "sst2" and record["split"] == "dev" and record["metric"] == "acc"
    assert record["examples"] == 32 and record["quantization"]["per_channel"] is per_channel
    fp32, int8 = record["fp32"]["acc"], record["int8"]["acc"]
    # the fp32 graph scores what the PyTorch model scores; the model learnt the task
    assert fp32 == pytest.approx(_torch_dev_acc(run / "model", data)) and fp32 > 0.8
    assert record["drop_points"] == pytest.approx(100 * (fp32 - int8))
    assert record["drop_points"] <= 1
    assert record["int8_mb"] < record["fp32_mb"]
    assert record["provenance"]["models"] == {"student": str(run / "model")}
    printed = capsys.readouterr().out
    assert f"fp32 {100 * fp32:.2f}, int8 {100 * int8:.2f}" in printed

    graph = onnx.load(str(out))
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {n.op_type for n in graph.graph.node}
    assert any(t.data_type == TensorProto.INT8 for t in graph.graph.initializer)
    assert sorted(p.name for p in out.parent.iterdir()) == ["student.int8.json",
                                                            "student.onnx"]


def _with_unused_outlier(run: Path, folder: Path) -> Path:
    """The same model with one huge value in the embedding row of a token the data never
    uses: fp32 predictions do not change (the row is never read), but int8's one scale for
    the whole embedding table becomes so coarse that every other embedding rounds to 0."""
    model = load_model("sparsebert_cls", run / "model", TASKS["sst2"], "student")
    with torch.no_grad():
        model.base_model.embeddings.word_embeddings.weight[4, 0] = 1e4  # [MASK]
    model.save_pretrained(folder)
    pipeline.load_tokenizer(run / "model").save_pretrained(folder)
    return folder


def test_drop_beyond_the_bound_writes_nothing(finetuned, tmp_path, capsys):
    run, data = finetuned
    ckpt = _with_unused_outlier(run, tmp_path / "outlier")
    out = tmp_path / "deploy" / "student.onnx"
    argv = [str(ckpt), "--onnx", str(out), "--quantize", "int8", "--data_dir", str(data)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --max_metric_drop 1: int8 dev acc ") and " fp32 " in err
    assert not out.parent.exists() or not list(out.parent.iterdir())
    # a larger bound accepts it, and the record says how much was lost
    assert main([*argv, "--max_metric_drop", "100"]) == 0
    record = json.loads(sidecar(out).read_text())
    assert record["drop_points"] > 1 and record["max_metric_drop"] == 100
    assert record["fp32"]["acc"] == pytest.approx(_torch_dev_acc(run / "model", data))


@pytest.mark.parametrize("flags, message", [
    (["--max_metric_drop", "-1"], "--max_metric_drop -1"),
    (["--data_dir", "nowhere"], "nowhere"),
])
def test_bad_int8_inputs_exit_2(finetuned, flags, message, tmp_path, capsys):
    run, _ = finetuned
    out = tmp_path / "s.onnx"
    argv = [str(run), "--onnx", str(out), "--quantize", "int8", *flags]
    if "--data_dir" not in flags:
        argv += ["--data_dir", str(finetuned[1])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and message in err
    assert not list(tmp_path.iterdir())
