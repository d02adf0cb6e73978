"""The EncT5 family through run.py: a tiny random T5 checkpoint with a Unigram T5 tokenizer
goes through finetune -> sparsify -> distill / minidisc (and CoNLL finetune -> sparsify); the
tokenizer side (no CLS, `</s>` closing, no token_type_ids), the family's CLI defaults, and
the student's predict and ONNX export."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import importance, make_tiny_t5, prunable, run_mode, write_conll_task
from transformers import AutoTokenizer

from minidisc import cli, registry
from minidisc.data import pipeline
from minidisc.data.examples import TagExample
from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError
from minidisc.models import load_model, max_positions, resolve_max_length
from minidisc.models.families import ENCT5
from minidisc.models.sparse_t5 import MiniDiscT5Config, SparseEncT5ForSequenceClassification
from minidisc.predict import predict


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


def test_tokenizer_pairs_and_tags(tiny_t5):
    tok = pipeline.load_tokenizer(tiny_t5, pre_split=True)
    assert type(tok) is type(AutoTokenizer.from_pretrained(tiny_t5))
    assert "token_type_ids" not in tok.model_input_names
    eos = tok.eos_token_id
    pair = tok("good movie", "bad film")["input_ids"]
    assert pair.count(eos) == 2 and pair[-1] == eos  # a </s> b </s>
    example = TagExample("0", ["john", "visited", "paris"], ["B-PER", "O", "B-LOC"])
    feat = pipeline._encode_tags(TASKS["conll"], [example], tok, 32)[0]
    assert set(feat) == {"input_ids", "attention_mask", "labels"}
    ids = feat["input_ids"]
    assert ids[-1] == eos and ids[:-1] == tok("john visited paris",
                                              add_special_tokens=False)["input_ids"]
    assert feat["labels"][0] != -100 and feat["labels"][-1] == -100  # no start token
    assert max_positions(tiny_t5) is None  # relative positions: no table to outgrow
    assert resolve_max_length(tok, None) == registry.DEFAULT_MAX_LENGTH
    assert resolve_max_length(tok, 4096) == 4096


@pytest.mark.parametrize("kind", ["cls", "ner"])
def test_new_head_weights_are_initialised(kind, tiny_t5):
    """A T5 checkpoint has no task head: its weights must not be left uninitialised memory."""
    model = ENCT5.task_classes[kind].from_pretrained(tiny_t5, num_labels=5)
    head = model.classifier.weight
    assert torch.isfinite(head).all() and 0 < head.abs().max() < 5
    assert not model.classifier.bias.any()


def _parse(teacher: Path, *flags: str):
    cfg = cli.parse_args(["--mode", "finetune", "--task_name", "sst2", "--teacher_model_path",
                          str(teacher), *flags])
    return SimpleNamespace(model_type=cfg.model.model_type, data_type=cfg.data.data_type)


def test_cli_defaults_and_data_types(tiny_t5):
    args = _parse(tiny_t5)
    assert (args.model_type, args.data_type) == ("sparseenct5_cls", "enct5_cls")
    args = _parse(tiny_t5, "--model_type", "ftenct5_cls", "--data_type", "enct5_cls")
    assert args.data_type == "enct5_cls"
    with pytest.raises(MiniDiscError, match="use enct5_cls"):
        _parse(tiny_t5, "--data_type", "bert_cls")
    with pytest.raises(MiniDiscError, match="does not fit task"):
        _parse(tiny_t5, "--data_type", "enct5_ner")


def test_finetune_sparsify_distill_minidisc(tiny_t5, sst2_dir, tmp_path):
    out = tmp_path / "out"
    ft = run_mode("finetune", sst2_dir, out, tiny_t5, "--model_type", "ftenct5_cls",
              "--num_train_epochs", "2")
    run = out / "ftenct5_cls_finetune_sst2"
    assert (run / "model" / "config.json").is_file()
    sp = run_mode("sparsify", sst2_dir, out, run, "--model_type", "sparseenct5_cls",
              "--data_type", "enct5_cls")
    assert sp["dev_before_reorder"] == pytest.approx(ft["final"]["dev"])  # the saved best
    assert sp["dev_before_reorder"] == pytest.approx(sp["dev_after_reorder"], abs=1e-6)
    teacher = out / "sparseenct5_cls_sparsify_sst2"
    cfg = json.loads((teacher / "model" / "config.json").read_text())
    assert cfg["model_type"] == "minidisc_t5" and "90" in cfg["sparsity_map"]
    assert len(cfg["relative_bias_heads"]) == 2
    dist = run_mode("distill", sst2_dir, out, teacher, "--layer_or_sparsity", "90S")
    assert dist["final"]["sparsity"] == 90
    md = run_mode("minidisc", sst2_dir, out, teacher, "--target_sparsity", "90",
              "--sandwich_k", "0", "--final_sandwich", "target")
    student = out / "sparseenct5_cls_minidisc_90S_lam0.2_sst2" / md["final"]["path"]
    model = load_model("sparseenct5_cls", student, TASKS["sst2"], "student")
    assert type(model) is SparseEncT5ForSequenceClassification
    assert isinstance(model.config, MiniDiscT5Config) and model.config.sparsity == 90
    assert md["final"]["params"]["encoder"] < sp["params_by_sparsity"]["0"]["encoder"]
    # the student predicts: the family comes from its config.json
    preds = predict(student, sst2_dir / "sst2" / "test.tsv", output=tmp_path / "p.tsv")
    assert len(preds.read_text().splitlines()) == 9  # header + 8 rows

def test_ner_finetune_and_sparsify(tiny_t5, tmp_path):
    data = write_conll_task(tmp_path / "data")
    out = tmp_path / "out"
    ft = run_mode("finetune", data, out, tiny_t5, task="conll")
    assert "f1" in ft["final"]["dev"]
    run_mode("sparsify", data, out, out / "sparseenct5_ner_finetune_conll", task="conll")
    cfg = json.loads((out / "sparseenct5_ner_sparsify_conll" / "model" /
                      "config.json").read_text())
    assert cfg["architectures"] == ["SparseEncT5ForTokenClassification"]


@pytest.mark.parametrize("kind", ["cls", "ner"])
def test_onnx_export_declares_no_token_types(kind, tmp_path):
    """A reordered, ragged 90% EncT5 (a layer without heads, one without neurons) exports with
    input_ids and attention_mask only and matches PyTorch in onnxruntime."""
    pytest.importorskip("onnxruntime")
    from minidisc.export import export, ort_session

    model = prunable("gated-gelu", ENCT5.task_classes[kind])
    model.reorder(*importance(3))
    model.sparsify(90)
    model.densify()
    model.save_pretrained(tmp_path / "student")
    diff = export(tmp_path / "student", tmp_path / "student.onnx", max_length=12)
    assert diff is not None and diff <= 1e-4
    names = [i.name for i in ort_session(tmp_path / "student.onnx").get_inputs()]
    assert names == ["input_ids", "attention_mask"]
