"""The RoBERTa family: the narrowable RoBERTa equals transformers' at full width, reorders
exactly, narrows virtually as it densifies, round-trips ragged; a tiny RoBERTa checkpoint with
a byte-level BPE tokenizer goes through finetune -> sparsify -> distill / minidisc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FILLER, NEGATIVE, NER_WORDS, POSITIVE, run_mode, write_conll_task
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    RobertaTokenizer,
)

from minidisc.compression.sparsity_map import make_prunable, random_importance
from minidisc.data import pipeline
from minidisc.data.examples import TagExample
from minidisc.data.tasks import TASKS
from minidisc.main import execute, main
from minidisc.models import load_model, max_positions
from minidisc.models.families import count_params
from minidisc.models.sparse_roberta import (
    MiniDiscRobertaConfig,
    SparseRobertaForSequenceClassification,
    SparseRobertaForTokenClassification,
    SparseRobertaModel,
)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4


def roberta_config(vocab_size: int = 120, **kw) -> RobertaConfig:
    base = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=64, max_position_embeddings=66,
                type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return RobertaConfig(**base)


def bpe_tokenizer() -> RobertaTokenizer:
    """A byte-level BPE trained on the fixture words, as a RoBERTa tokenizer."""
    words = POSITIVE + NEGATIVE + FILLER + NER_WORDS
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(words)] * 4 + words, vocab_size=400, min_frequency=1,
                            special_tokens=SPECIALS, show_progress=False)
    merges = json.loads(bpe._tokenizer.to_str())["model"]["merges"]
    return RobertaTokenizer(vocab=bpe.get_vocab(), merges=[tuple(m) for m in merges])


def make_tiny_roberta(folder: Path) -> Path:
    """A random tiny RobertaModel checkpoint with its BPE tokenizer."""
    tok = bpe_tokenizer()
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    RobertaModel(roberta_config(len(tok))).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    return make_tiny_roberta(tmp_path_factory.mktemp("tiny_roberta"))


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tokens, rows padded at the end with RoBERTa's pad id (positions depend on it)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _prunable(cls: type = SparseRobertaForSequenceClassification, seed: int = 0):
    torch.manual_seed(seed)
    model = cls(roberta_config(num_labels=3)).eval()
    make_prunable(model, *random_importance(model, seed))
    return model


@pytest.mark.parametrize("plain, sparse", [
    (RobertaForSequenceClassification, SparseRobertaForSequenceClassification),
    (RobertaForTokenClassification, SparseRobertaForTokenClassification),
    (RobertaModel, SparseRobertaModel),
])
def test_full_width_equals_transformers(plain, sparse, tmp_path):
    torch.manual_seed(0)
    plain(roberta_config(num_labels=3)).save_pretrained(tmp_path)
    ref = plain.from_pretrained(tmp_path).eval()
    model, info = sparse.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = _inputs()
    with torch.no_grad():
        want = ref(**x, output_hidden_states=True)
        got = model.eval()(**x, output_hidden_states=True) if sparse is not SparseRobertaModel \
            else model.eval()(**x)[0]
    if sparse is SparseRobertaModel:
        m = x["attention_mask"].bool()
        for a, b in zip(got, want.hidden_states):
            torch.testing.assert_close(a[m], b[m], atol=1e-5, rtol=0)
        return
    keep = x["attention_mask"].bool() if sparse is SparseRobertaForTokenClassification else ...
    torch.testing.assert_close(got.logits[keep], want.logits[keep], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [SparseRobertaForSequenceClassification,
                                 SparseRobertaForTokenClassification])
def test_reorder_is_exact(cls):
    torch.manual_seed(0)
    model = cls(roberta_config(num_labels=3)).eval()
    x = _inputs()
    with torch.no_grad():
        before = model(**x).logits
        model.reorder([torch.rand(4) for _ in range(2)], [torch.rand(64) for _ in range(2)])
        after = model(**x).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("s", [50, 90])
def test_virtual_narrowing_equals_densified(s):
    model = _prunable()
    x = _inputs(1)
    with torch.no_grad():
        model.sparsify(s)
        virtual, virtual_params = model(**x).logits, count_params(model)
        model.densify()
        dense = model(**x).logits
    torch.testing.assert_close(dense, virtual, atol=1e-5, rtol=0)
    assert count_params(model) == virtual_params
    layers = model.roberta.encoder.parameters()
    assert sum(p.numel() for p in layers) == virtual_params["encoder"]


def test_ragged_round_trip_and_remote_code(tmp_path):
    model = _prunable(seed=3)
    model.sparsify(70)
    model.densify()
    heads, neurons = model.roberta.widths()
    assert len(set(heads)) > 1 or len(set(neurons)) > 1, "not ragged"
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "minidisc_roberta" and cfg["layer_heads"] == heads
    assert cfg["auto_map"]["AutoModelForSequenceClassification"] == \
        "sparse_roberta.SparseRobertaForSequenceClassification"
    assert (tmp_path / "sparse_roberta.py").is_file() and (tmp_path / "sparse_bert.py").is_file()
    x = _inputs(2)
    with torch.no_grad():
        want = model(**x).logits
        again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        assert type(again) is SparseRobertaForSequenceClassification
        torch.testing.assert_close(again(**x).logits, want, atol=1e-6, rtol=0)
    # without MiniDisc: transformers runs the two files saved beside the weights
    code = ("import json, sys, torch\n"
            "sys.modules['minidisc'] = None\n"  # installed or not: the saved code must not need it
            "from transformers import AutoModelForSequenceClassification as A\n"
            "m = A.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
            "x = {k: torch.tensor(v) for k, v in json.loads(sys.argv[2]).items()}\n"
            "print(json.dumps([type(m).__name__, m(**x).logits.tolist()]))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path),
                           json.dumps({k: v.tolist() for k, v in x.items()})],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    name, logits = json.loads(done.stdout.strip().splitlines()[-1])
    assert name == "SparseRobertaForSequenceClassification"
    torch.testing.assert_close(torch.tensor(logits), want, atol=1e-5, rtol=0)


def test_tagging_uses_the_tokenizers_own_frame(tiny_roberta, conll_dir):
    tok = pipeline.load_tokenizer(tiny_roberta, pre_split=True)
    assert "token_type_ids" not in tok.model_input_names
    words = ["john", "visited", "paris"]
    example = TagExample("0", words, ["B-PER", "O", "B-LOC"])
    split = pipeline._encode_tags(TASKS["conll"], [example], tok, 32)[0]
    assert set(split) == {"input_ids", "attention_mask", "labels"}
    ids = split["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    # each word as inside a sentence: after a space (byte-level BPE's word start)
    plain = pipeline.load_tokenizer(tiny_roberta)
    inner = plain(" ".join(["the", *words]), add_special_tokens=False)["input_ids"]
    assert ids[1:-1] == inner[len(plain.encode("the", add_special_tokens=False)):]
    assert sum(lab != -100 for lab in split["labels"]) == 3
    assert max_positions(tiny_roberta) == 64  # 66 positions, the first two reserved


def test_finetune_sparsify_distill_minidisc(tiny_roberta, sst2_dir, tmp_path):
    out = tmp_path / "out"
    ft = run_mode("finetune", sst2_dir, out, tiny_roberta, "--num_train_epochs", "4")
    assert (out / "sparseroberta_cls_finetune_sst2" / "model" / "config.json").is_file()
    sp = execute(["--mode", "sparsify", "--task_name", "sst2", "--data_dir", str(sst2_dir),
                  "--output_dir", str(out), "--use_cpu", "--teacher_model_path",
                  str(out / "sparseroberta_cls_finetune_sst2")])
    assert sp["dev_before_reorder"] == pytest.approx(ft["final"]["dev"])  # the saved best
    assert sp["dev_before_reorder"] == pytest.approx(sp["dev_after_reorder"], abs=1e-9)
    teacher = out / "sparseroberta_cls_sparsify_sst2"
    cfg = json.loads((teacher / "model" / "config.json").read_text())
    assert cfg["model_type"] == "minidisc_roberta" and "90" in cfg["sparsity_map"]
    dist = run_mode("distill", sst2_dir, out, teacher, "--layer_or_sparsity", "90S")
    assert dist["final"]["sparsity"] == 90
    layers = run_mode("distill", sst2_dir, out, teacher, "--layer_or_sparsity", "1L",
                  "--model_type", "ftroberta_cls")
    assert layers["final"]["num_layers"] == 1
    md = run_mode("minidisc", sst2_dir, out, teacher, "--target_sparsity", "90",
              "--sandwich_k", "0", "--final_sandwich", "target")
    student = out / "sparseroberta_cls_minidisc_90S_lam0.2_sst2" / md["final"]["path"]
    model = load_model("sparseroberta_cls", student, TASKS["sst2"], "student")
    assert type(model) is SparseRobertaForSequenceClassification
    assert isinstance(model.config, MiniDiscRobertaConfig) and model.config.sparsity == 90
    assert md["final"]["params"]["encoder"] < sp["params_by_sparsity"]["0"]["encoder"]


def test_ner_finetune_and_sparsify(tiny_roberta, tmp_path):
    data = write_conll_task(tmp_path / "data")
    out = tmp_path / "out"
    ft = run_mode("finetune", data, out, tiny_roberta, task="conll")
    assert "f1" in ft["final"]["dev"]
    run = out / "sparseroberta_ner_finetune_conll"
    saved = json.loads((run / "model" / "tokenizer_config.json").read_text())
    assert saved["add_prefix_space"] is True  # the checkpoint tags as it was trained
    run_mode("sparsify", data, out, run, task="conll")
    cfg = json.loads((out / "sparseroberta_ner_sparsify_conll" / "model" /
                      "config.json").read_text())
    assert cfg["architectures"] == ["SparseRobertaForTokenClassification"]


@pytest.mark.parametrize("flags, message", [
    (["--mode", "finetune", "--model_type", "sparsebert_cls"],
     "a RoBERTa checkpoint (use --model_type sparseroberta_cls)"),
    (["--mode", "sparsify", "--model_type", "ftroberta_cls"],
     "--model_type sparseroberta_cls"),
])
def test_family_must_match_the_checkpoint(flags, message, tiny_roberta, sst2_dir, tmp_path,
                                          capsys):
    out = tmp_path / "out"
    code = main([*flags, "--task_name", "sst2", "--data_dir", str(sst2_dir), "--output_dir",
                 str(out), "--teacher_model_path", str(tiny_roberta), "--use_cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_onnx_export_declares_no_token_types(tmp_path):
    """A RoBERTa graph takes input_ids and attention_mask only (verified in onnxruntime)."""
    pytest.importorskip("onnxruntime")
    from minidisc.export import export, ort_session

    model = _prunable(SparseRobertaForTokenClassification, seed=4)
    model.sparsify(60)
    model.densify()
    model.save_pretrained(tmp_path / "student")
    diff = export(tmp_path / "student", tmp_path / "student.onnx", max_length=12)
    assert diff is not None and diff <= 1e-4
    names = [i.name for i in ort_session(tmp_path / "student.onnx").get_inputs()]
    assert names == ["input_ids", "attention_mask"]
