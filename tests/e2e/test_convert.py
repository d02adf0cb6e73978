"""Converting checkpoints of the original MiniDisc code: same logits, right widths, clean errors.

The reference checkpoints are built here in its format: `cls.0`/`cls.3` (or `cls.1`) heads, an
unused `bert.pooler`, a string `sparsity`, a map of per-layer dicts of removed counts, and
densified weights whose widths are implied by sparsity + map only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_bert
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from minidisc.convert import main
from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError
from minidisc.main import execute
from minidisc.models import load_model
from minidisc.models.sparse_bert import (
    SparseBertForSequenceClassification,
    SparseBertForTokenClassification,
)

HEAD_SIZE = 8  # hidden 32 / 4 heads
# Removed counts as the reference stores them; neurons are rounded to multiples of 8 by its
# layers with Python's round (halves to even): 22->24, 43->40, 44->48, 52->48, 60->64, 59->56.
MAP = {
    "0": {"head": {}, "neuron": {}},
    "50": {"head": {"0": 1, "1": 3}, "neuron": {"0": 22, "1": 43}},
    "70": {"head": {"0": 2, "1": 4}, "neuron": {"0": 44, "1": 52}},
    "90": {"head": {"0": 3, "1": 4}, "neuron": {"0": 60, "1": 59}},
}
WIDTHS = {"50": ([3, 1], [40, 24]), "70": ([2, 0], [16, 16]), "90": ([1, 0], [0, 8])}
STUB_MAP = {"0": {"head": {}, "neuron": {}}}  # what the reference writes into every config


def reference_checkpoint(folder: Path, *, kind: str = "cls", num_labels: int = 2,
                         sparsity: str = "0", smap: dict | None = None,
                         widths: tuple[list[int], list[int]] | None = None,
                         fmt: str = "bin") -> dict[str, torch.Tensor]:
    """A tiny checkpoint as the reference saves it; returns its state dict."""
    make_tiny_bert(folder)
    state = {f"bert.{k}": v for k, v in load_file(folder / "model.safetensors").items()}
    (folder / "model.safetensors").unlink()
    state["bert.embeddings.position_ids"] = torch.arange(64).expand(1, -1)
    g = torch.Generator().manual_seed(1)
    for k in state:
        if k.endswith(".bias"):  # BERT's init zeroes them; a trained model's are not zero
            state[k] = state[k] + 0.1 * torch.randn(state[k].shape, generator=g)
    for i, (h, n) in enumerate(zip(*widths)) if widths else ():
        w = h * HEAD_SIZE  # the reference's densify: keep the first units of each layer
        cuts = {"attention.self.query": (w, None), "attention.self.key": (w, None),
                "attention.self.value": (w, None), "attention.output.dense": (None, w),
                "intermediate.dense": (n, None), "output.dense": (None, n)}
        for name, (rows, cols) in cuts.items():
            p = f"bert.encoder.layer.{i}.{name}"
            state[f"{p}.weight"] = state[f"{p}.weight"][:rows, :cols]
            state[f"{p}.bias"] = state[f"{p}.bias"][:rows]
    heads = {"cls": {"cls.0": 32, "cls.3": num_labels}, "ner": {"cls.1": num_labels}}[kind]
    for name, rows in heads.items():
        state[f"{name}.weight"] = torch.randn(rows, 32, generator=g) * 0.5
        state[f"{name}.bias"] = torch.randn(rows, generator=g) * 0.5
    state = {k: v.contiguous() for k, v in state.items()}
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(architectures=["SparseBertCls" if kind == "cls" else "SparseBertNer"],
               id2label={str(i): f"LABEL_{i}" for i in range(num_labels)},
               label2id={f"LABEL_{i}": i for i in range(num_labels)},
               sparsity=sparsity, sparsity_map=smap if smap is not None else STUB_MAP,
               num_relation_heads=32)
    (folder / "config.json").write_text(json.dumps(cfg))
    return state


def _inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids, mask


def _hf_last_hidden(folder: Path, state: dict, ids, mask) -> torch.Tensor:
    """The full-width reference encoder is a plain BertModel with the same weights."""
    bert = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False).eval()
    bert.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("bert.")
                          and not k.startswith(("bert.pooler", "bert.embeddings.position_ids"))})
    with torch.no_grad():
        return bert(input_ids=ids, attention_mask=mask).last_hidden_state


def _reference_cls_logits(state, ids, mask) -> torch.Tensor:
    """The reference's math, written out for ragged widths: a sublayer narrower than 8 units
    is skipped (LayerNorm of the residual alone), and its head pools [CLS] with cls.0 + tanh."""
    def lin(x, p):
        return F.linear(x, state[f"{p}.weight"], state[f"{p}.bias"])

    def ln(x, p):
        return F.layer_norm(x, x.shape[-1:], state[f"{p}.weight"], state[f"{p}.bias"], 1e-12)

    b, t = ids.shape
    e = "bert.embeddings."
    x = (state[f"{e}word_embeddings.weight"][ids] + state[f"{e}token_type_embeddings.weight"][0]
         + state[f"{e}position_embeddings.weight"][:t])
    x = ln(x, f"{e}LayerNorm")
    bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(2):
        p = f"bert.encoder.layer.{i}."
        w = state[f"{p}attention.self.query.weight"].shape[0]
        if w < 8:
            a = ln(x, f"{p}attention.output.LayerNorm")
        else:
            q, k, v = (lin(x, f"{p}attention.self.{n}").view(b, t, -1, HEAD_SIZE).transpose(1, 2)
                       for n in ("query", "key", "value"))
            att = torch.softmax(q @ k.transpose(-1, -2) / HEAD_SIZE ** 0.5 + bias, -1) @ v
            ctx = att.transpose(1, 2).reshape(b, t, w)
            a = ln(lin(ctx, f"{p}attention.output.dense") + x, f"{p}attention.output.LayerNorm")
        if state[f"{p}intermediate.dense.weight"].shape[0] < 8:
            x = ln(a, f"{p}output.LayerNorm")
        else:
            h = F.gelu(lin(a, f"{p}intermediate.dense"))
            x = ln(lin(h, f"{p}output.dense") + a, f"{p}output.LayerNorm")
    return lin(torch.tanh(lin(x[:, 0], "cls.0")), "cls.3")


def _logits(model, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def test_sparsified_cls_same_logits_and_labels_reordered(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    state = reference_checkpoint(ref, num_labels=3, smap=MAP)
    assert main([str(ref), str(out), "--task_name", "mnli"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["SparseBertForSequenceClassification"]
    assert cfg["sparsity"] == 0.0 and "layer_heads" not in cfg
    assert "num_relation_heads" not in cfg
    assert cfg["sparsity_map"] == {
        "0": {"heads": [0, 0], "neurons": [0, 0]},
        "50": {"heads": [1, 3], "neurons": [24, 40]},
        "70": {"heads": [2, 4], "neurons": [48, 48]},
        "90": {"heads": [3, 4], "neurons": [64, 56]},
    }
    assert cfg["id2label"] == {"0": "contradiction", "1": "entailment", "2": "neutral"}
    assert (out / "tokenizer.json").is_file()

    ids, mask = _inputs()
    hidden = _hf_last_hidden(ref, state, ids, mask)
    ref_logits = F.linear(torch.tanh(F.linear(hidden[:, 0], state["cls.0.weight"],
                                              state["cls.0.bias"])),
                          state["cls.3.weight"], state["cls.3.bias"])
    model = load_model("sparsebert_cls", out, TASKS["mnli"], "--teacher_model_path").eval()
    # the reference indexes MNLI as contradiction, neutral, entailment
    ref_order = [0, 2, 1]
    torch.testing.assert_close(_logits(model, ids, mask), ref_logits[:, ref_order],
                               atol=1e-5, rtol=0)
    model.sparsify(50)
    assert model.bert.widths() == ([3, 1], [40, 24])


@pytest.mark.parametrize("at", ["50", "70"])
def test_densified_ragged_widths_logits_and_narrowing(tmp_path, at):
    ref, out = tmp_path / "ref", tmp_path / "out"
    smap = {k: v for k, v in MAP.items() if int(k) >= int(at)}  # the reference truncates
    state = reference_checkpoint(ref, sparsity=at, smap=smap, widths=WIDTHS[at],
                                 fmt="safetensors")
    assert main([str(ref), str(out), "--task_name", "sst2"]) == 0
    model = SparseBertForSequenceClassification.from_pretrained(out).eval()
    cfg = model.config
    assert cfg.sparsity == float(at)
    assert (cfg.layer_heads, cfg.layer_neurons) == WIDTHS[at]
    assert sorted(cfg.sparsity_map, key=float) == sorted(smap, key=float)
    ids, mask = _inputs()
    # at 70 layer 1 has no heads: the reference skips its unused output bias too
    torch.testing.assert_close(_logits(model, ids, mask), _reference_cls_logits(state, ids, mask),
                               atol=1e-5, rtol=0)
    model.sparsify(90)
    assert model.bert.widths() == WIDTHS["90"]
    with pytest.raises(MiniDiscError):
        model.sparsify(0)
    assert load_model("sparsebert_cls", out, TASKS["sst2"], "--teacher_model_path")


def test_finetuned_ner_head(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    state = reference_checkpoint(ref, kind="ner", num_labels=9)
    assert main([str(ref), str(out), "--task_name", "conll"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BertForTokenClassification"]
    assert "sparsity_map" not in cfg and cfg["id2label"]["1"] == "B-PER"
    ids, mask = _inputs()
    hidden = _hf_last_hidden(ref, state, ids, mask)
    want = F.linear(hidden, state["cls.1.weight"], state["cls.1.bias"])
    for model_type in ("ftbert_ner", "sparsebert_ner"):
        model = load_model(model_type, out, TASKS["conll"], "--teacher_model_path").eval()
        torch.testing.assert_close(_logits(model, ids, mask), want, atol=1e-5, rtol=0)
    assert isinstance(SparseBertForTokenClassification.from_pretrained(out),
                      SparseBertForTokenClassification)


def test_converted_model_runs_in_run_py(tmp_path, sst2_dir):
    ref, out = tmp_path / "ref", tmp_path / "out"
    reference_checkpoint(ref, sparsity="50", smap={k: MAP[k] for k in ("50", "70", "90")},
                         widths=WIDTHS["50"])
    assert main([str(ref), str(out), "--task_name", "sst2"]) == 0
    res = execute(["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(sst2_dir),
                   "--output_dir", str(tmp_path / "runs"), "--teacher_model_path", str(out),
                   "--use_cpu", "--do_infer"])  # evaluate and predict only
    assert res["final"]["sparsity"] == 50.0 and "acc" in res["final"]["dev"]
    assert "train" not in res and res["final"]["predictions"]


def _break(case: str, ref: Path, out: Path) -> list[str]:
    """Set up one kind of bad input; returns the extra CLI arguments."""
    if case == "missing folder":
        return []
    reference_checkpoint(ref, num_labels=3, smap=MAP)
    cfg = json.loads((ref / "config.json").read_text())
    if case == "no config":
        (ref / "config.json").unlink()
        return []
    if case == "no weights":
        (ref / "pytorch_model.bin").unlink()
    elif case == "unknown weight":
        state = torch.load(ref / "pytorch_model.bin", weights_only=True)
        state["bert.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
        torch.save(state, ref / "pytorch_model.bin")
    elif case == "shape vs map":
        cfg["sparsity"] = "50"  # full-width weights cannot be a model densified at 50
    elif case == "bad map":
        cfg["sparsity_map"]["50"]["head"]["7"] = 1  # layer 7 of a 2-layer model
    elif case == "label count":
        return ["--task_name", "sst2"]
    elif case == "unknown task":
        return ["--task_name", "nope"]
    elif case == "out exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    (ref / "config.json").write_text(json.dumps(cfg))
    return []


@pytest.mark.parametrize("case", ["missing folder", "no config", "no weights", "unknown weight",
                                  "shape vs map", "bad map", "label count", "unknown task",
                                  "out exists"])
def test_bad_input_exits_2_and_writes_nothing(case, tmp_path, capsys):
    ref, out = tmp_path / "ref", tmp_path / "out"
    extra = _break(case, ref, out)
    capsys.readouterr()
    assert main([str(ref), str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == err[-1], err
    if case == "out exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "REF_DIR" in capsys.readouterr().out
