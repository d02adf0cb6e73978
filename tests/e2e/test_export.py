"""ONNX export of densified (ragged) students: onnxruntime logits equal PyTorch's at several
batch and sequence sizes, for sentence and token classification; bad inputs exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import BertForTokenClassification, BertModel

from minidisc.compression.sparsity_map import build_map
from minidisc.export import export, main, ort_session
from minidisc.models.sparse_bert import (
    SparseBertForSequenceClassification,
    SparseBertForTokenClassification,
)

# nonzero, so a model that export left in training mode would fail the logits check
DROPOUT = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _densified_student(cls: type, folder: Path, sparsity: float = 60) -> Path:
    """A tiny prunable model narrowed to ragged layer widths and saved as a checkpoint."""
    torch.manual_seed(0)
    model = cls(tiny_config(num_labels=3, **DROPOUT)).eval()
    model.config.sparsity = 0
    heads = [torch.rand(4) for _ in range(2)]
    neurons = [torch.rand(64) for _ in range(2)]
    model.config.sparsity_map = build_map(heads, neurons, levels=[0, sparsity])
    model.sparsify(sparsity)
    model.densify()
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("cls", [SparseBertForSequenceClassification,
                                 SparseBertForTokenClassification])
def test_onnx_logits_match_pytorch_at_any_shape(cls, tmp_path):
    ckpt = _densified_student(cls, tmp_path / "student")
    config = json.loads((ckpt / "config.json").read_text())
    widths = list(zip(config["layer_heads"], config["layer_neurons"]))
    assert widths != [(4, 64)] * 2 and len(set(widths)) > 1  # narrowed and ragged
    out = tmp_path / "deploy" / "student.onnx"
    assert main([str(ckpt), "--onnx", str(out), "--max_length", "16"]) == 0
    assert out.is_file() and not list(out.parent.glob(".*.tmp"))

    model = cls.from_pretrained(ckpt).eval()
    session = ort_session(out)
    for b, t in [(1, 5), (4, 23)]:  # neither is the traced 2 x 16
        g = torch.Generator().manual_seed(b)
        ids = torch.randint(0, model.config.vocab_size, (b, t), generator=g)
        mask = torch.ones_like(ids)
        mask[-1, t - 2:] = 0
        types = torch.zeros_like(ids)
        with torch.no_grad():
            ref = model(ids, mask, types).logits.numpy()
        got = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                       "token_type_ids": types.numpy()})[0]
        assert got.shape == ref.shape == ((b, 3) if model.pooled else (b, t, 3))
        assert np.abs(got - ref).max() < 1e-4


def test_empty_layers_and_run_folder(tmp_path):
    """A layer may lose every head or every neuron; a run folder stands for its checkpoint."""
    torch.manual_seed(0)
    model = SparseBertForSequenceClassification(tiny_config(num_labels=2, **DROPOUT)).eval()
    model.config.sparsity = 0
    model.config.sparsity_map = {"0": {"heads": [0, 0], "neurons": [0, 0]},
                                 "70": {"heads": [4, 1], "neurons": [10, 64]}}
    model.sparsify(70)
    model.densify()
    model.save_pretrained(tmp_path / "run" / "model")
    (tmp_path / "run" / "results.json").write_text(json.dumps({"final": {"path": "model"}}))
    diff = export(tmp_path / "run", tmp_path / "s.onnx", max_length=12)
    assert diff is not None and diff < 1e-4


def test_plain_finetuned_bert(tmp_path):
    """A finetuned transformers BertFor... checkpoint loads as the Sparse class and exports."""
    torch.manual_seed(0)
    plain = BertForTokenClassification(tiny_config(num_labels=5, **DROPOUT))
    plain.save_pretrained(tmp_path / "ft")
    diff = export(tmp_path / "ft", tmp_path / "ft.onnx", max_length=8)
    assert diff is not None and diff < 1e-4


@pytest.mark.parametrize("what, flags, message", [
    ("missing", [], "student "),
    ("not_checkpoint", [], "student "),
    ("headless", [], "student "),  # a bare encoder: nothing would produce logits
    ("ok", ["--opset", "13"], "--opset 13"),
    ("ok", ["--max_length", "1"], "--max_length 1"),
])
def test_errors_exit_2(what, flags, message, tmp_path, capsys):
    student = tmp_path / "student"
    if what == "not_checkpoint":
        student.mkdir()
    elif what == "headless":
        BertModel(tiny_config()).save_pretrained(student)
    elif what == "ok":
        SparseBertForSequenceClassification(tiny_config()).save_pretrained(student)
    out = tmp_path / "s.onnx"
    assert main([str(student), "--onnx", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {message}") and not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))
