"""The narrowable T5 encoder + EncT5 head: equal to transformers' T5 at full width, loads T5
checkpoints, exact reorder, virtual narrowing == densify (ragged), save/load, remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import SPARSITY_MAP, importance, prunable, t5_config
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    T5EncoderModel,
    T5ForConditionalGeneration,
)

from minidisc.compression.students import drop_layers
from minidisc.errors import MiniDiscError
from minidisc.models.families import count_params
from minidisc.models.sparse_bert import keep_counts
from minidisc.models.sparse_t5 import (
    MiniDiscT5Config,
    SparseEncT5ForSequenceClassification,
    SparseEncT5ForTokenClassification,
    SparseT5EncoderModel,
    relative_position_bucket,
)

FFN_KINDS = ("relu", "gated-gelu")


def batch(seed: int = 0, length: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 99, (3, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, length - 9:] = 0
    mask[2, length - 3:] = 0
    return ids, mask


def logits(model, seed: int = 0) -> torch.Tensor:
    ids, mask = batch(seed)
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits


@pytest.mark.parametrize("ff", FFN_KINDS)
def test_full_width_equals_transformers_t5_encoder(ff):
    torch.manual_seed(0)
    ref = T5EncoderModel(t5_config(ff)).eval()
    mine = SparseT5EncoderModel(t5_config(ff)).eval()
    result = mine.load_state_dict(ref.state_dict(), strict=False)
    assert not result.missing_keys
    assert set(result.unexpected_keys) <= {"encoder.embed_tokens.weight"}
    ids, mask = batch()
    with torch.no_grad():
        want = ref(ids, attention_mask=mask, output_hidden_states=True)
        hidden, pooled = mine(ids, mask)
    assert pooled is None and len(hidden) == 3
    torch.testing.assert_close(hidden[-1], want.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden[0], want.hidden_states[0], atol=1e-5, rtol=0)


def test_bucket_is_bidirectional_and_saturates():
    rel = torch.arange(-40, 41)
    b = relative_position_bucket(rel, 32, 128)
    assert b[40] == 0 and b[41] == 17 and b[39] == 1  # 0, +1, -1
    assert b.max() < 32 and b.min() >= 0
    assert (relative_position_bucket(torch.tensor([500, 5000]), 32, 128) == 31).all()


@pytest.mark.parametrize("ff", FFN_KINDS)
def test_loads_t5_encoder_and_seq2seq_checkpoints(ff, tmp_path):
    torch.manual_seed(1)
    full = T5ForConditionalGeneration(t5_config(ff)).eval()
    full.save_pretrained(tmp_path / "t5")
    enc = T5EncoderModel(t5_config(ff)).eval()
    enc.load_state_dict(full.state_dict(), strict=False)
    enc.save_pretrained(tmp_path / "enc")
    ids, mask = batch()
    with torch.no_grad():
        want = enc(ids, attention_mask=mask).last_hidden_state
    for folder in ("t5", "enc"):
        model = SparseEncT5ForSequenceClassification.from_pretrained(tmp_path / folder).eval()
        assert model.config.model_type == "minidisc_t5"
        with torch.no_grad():
            got = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        base = SparseT5EncoderModel.from_pretrained(tmp_path / folder).eval()
        with torch.no_grad():
            torch.testing.assert_close(base(ids, mask)[0][-1], want, atol=1e-5, rtol=0)
    # The full checkpoint also initialises the EncT5 head from its decoder's block 0.
    head = model.decoder.block[0].layer  # the last one loaded: from "enc", random head
    t5_head = SparseEncT5ForSequenceClassification.from_pretrained(tmp_path / "t5").decoder
    ref = full.decoder.block[0].layer
    torch.testing.assert_close(t5_head.block[0].layer[1].EncDecAttention.q.weight,
                               ref[1].EncDecAttention.q.weight)
    torch.testing.assert_close(t5_head.block[0].layer[2].DenseReluDense.wo.weight,
                               ref[2].DenseReluDense.wo.weight)
    torch.testing.assert_close(t5_head.final_layer_norm.weight,
                               full.decoder.final_layer_norm.weight)
    assert not torch.equal(head[1].EncDecAttention.q.weight, ref[1].EncDecAttention.q.weight)


def test_config_speaks_bert_names_and_reads_plain_t5(tmp_path):
    T5EncoderModel(t5_config("gated-gelu")).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "t5"
    cfg = MiniDiscT5Config.from_pretrained(tmp_path)
    assert cfg.model_type == "minidisc_t5" and cfg.is_gated_act
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers,
            cfg.intermediate_size) == (32, 4, 2, 64)
    cfg.sparsity_map = SPARSITY_MAP
    assert keep_counts(cfg, 50) == ([3, 2], [44, 54])


@pytest.mark.parametrize("ff", FFN_KINDS)
@pytest.mark.parametrize("cls", [SparseEncT5ForSequenceClassification,
                                 SparseEncT5ForTokenClassification])
def test_reorder_is_exact(ff, cls):
    model = prunable(ff, cls)
    before = logits(model)
    model.reorder(*importance(3))
    bias_heads = model.config.relative_bias_heads
    assert bias_heads[0] != bias_heads[1] and sorted(bias_heads[0]) == [0, 1, 2, 3]
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ff", FFN_KINDS)
def test_virtual_narrowing_equals_densify_ragged(ff):
    model = prunable(ff)
    model.reorder(*importance(4))
    full = logits(model)
    for s in ("50", "90"):
        model.sparsify(float(s))
        assert model.transformer.widths() == keep_counts(model.config, float(s))
        virtual = logits(model)
        assert not torch.allclose(virtual, full)
    model.sparsify(50)
    dense = prunable(ff)
    dense.reorder(*importance(4))
    dense.sparsify(50)
    dense.densify()
    torch.testing.assert_close(logits(dense), logits(model), atol=1e-5, rtol=0)
    # Densified at 50, then narrowed again to 90 (one layer with no heads, one with no
    # neurons) virtually and physically.
    model.sparsify(90)
    dense.sparsify(90)
    torch.testing.assert_close(logits(dense), logits(model), atol=1e-5, rtol=0)
    dense.densify()
    assert dense.config.layer_heads == [0, 1] and dense.config.layer_neurons == [34, 0]
    assert [len(c) for c in dense.config.relative_bias_heads] == [0, 1]
    torch.testing.assert_close(logits(dense), logits(model), atol=1e-5, rtol=0)
    assert count_params(dense) == count_params(model)
    assert count_params(dense)["total"] == sum(p.numel() for p in dense.parameters())
    with pytest.raises(MiniDiscError, match="not in the sparsity map"):
        dense.sparsify(50)


@pytest.mark.parametrize("ff", FFN_KINDS)
def test_save_load_round_trip_ragged(ff, tmp_path):
    model = prunable(ff, SparseEncT5ForTokenClassification)
    model.reorder(*importance(5))
    model.sparsify(50)
    model.densify()
    want = logits(model)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "minidisc_t5" and cfg["layer_heads"] == [3, 2]
    assert cfg["auto_map"]["AutoModelForTokenClassification"] == \
        "sparse_t5.SparseEncT5ForTokenClassification"
    assert (tmp_path / "sparse_t5.py").is_file() and (tmp_path / "sparse_bert.py").is_file()
    loaded = SparseEncT5ForTokenClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(logits(loaded), want, atol=1e-6, rtol=0)
    assert list(loaded.config.sparsity_map) == ["50", "90"]


FRESH = """
import json, sys, torch
import transformers
sys.modules["minidisc"] = None  # installed or not, the saved code must not import it
ids, mask = (torch.tensor(t) for t in json.loads(sys.argv[1]))
out = []
for path, auto in json.loads(sys.argv[2]):
    model = getattr(transformers, auto).from_pretrained(path, trust_remote_code=True).eval()
    config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=True)
    with torch.no_grad():
        out.append(dict(cls=type(model).__name__, config=type(config).__name__,
                        logits=model(input_ids=ids, attention_mask=mask).logits.tolist()))
print(json.dumps(out))
"""


def test_fresh_process_loads_with_remote_code(tmp_path):
    jobs, want = [], []
    for cls, auto in ((SparseEncT5ForSequenceClassification, "AutoModelForSequenceClassification"),
                      (SparseEncT5ForTokenClassification, "AutoModelForTokenClassification")):
        model = prunable("gated-gelu", cls)
        model.reorder(*importance(6))
        model.sparsify(90)
        model.densify()
        model.save_pretrained(tmp_path / auto)
        jobs.append((str(tmp_path / auto), auto))
        want.append(logits(model))
    ids, mask = batch()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps([ids.tolist(), mask.tolist()]),
         json.dumps(jobs)], cwd=tmp_path, env=env, capture_output=True,
        stdin=subprocess.DEVNULL, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert [g["cls"] for g in got] == ["SparseEncT5ForSequenceClassification",
                                       "SparseEncT5ForTokenClassification"]
    assert {g["config"] for g in got} == {"MiniDiscT5Config"}
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.tensor(g["logits"]), w, atol=1e-5, rtol=0)


def test_auto_classes_in_process(tmp_path):
    """Here too the code saved beside the weights serves (the registry may register the
    classes instead, as it does for minidisc_bert)."""
    model = prunable("relu")
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(config).__name__ == "MiniDiscT5Config"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True)
    torch.testing.assert_close(logits(loaded.eval()), logits(model), atol=1e-6, rtol=0)


@pytest.mark.parametrize("ff", FFN_KINDS)
def test_importance_gradients_flow_to_masks(ff):
    model = prunable(ff)
    head_mask = torch.ones(2, 4, requires_grad=True)
    neuron_mask = torch.ones(2, 64, requires_grad=True)
    ids, mask = batch()
    loss = model(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2]),
                 head_mask=head_mask, neuron_mask=neuron_mask).loss
    gh, gn = torch.autograd.grad(loss, [head_mask, neuron_mask])
    assert gh.abs().sum(dim=1).min() > 0 and gn.abs().sum(dim=1).min() > 0
    assert torch.isfinite(gh).all() and torch.isfinite(gn).all()
    # A zero mask cuts the unit: same function as the model narrowed by masking.
    with torch.no_grad():
        hm = torch.ones(2, 4)
        hm[0, 1] = 0
        cut = model(ids, attention_mask=mask, head_mask=hm).logits
    assert not torch.allclose(cut, logits(model))


def test_regression_and_token_losses():
    cfg = t5_config("relu")
    cfg.num_labels = 1
    reg = SparseEncT5ForSequenceClassification(cfg)
    ids, mask = batch()
    out = reg(ids, attention_mask=mask, labels=torch.tensor([0.5, 1.0, 2.0]))
    assert out.logits.shape == (3, 1) and out.loss.ndim == 0
    tok = prunable("relu", SparseEncT5ForTokenClassification)
    labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    out = tok(ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=labels,
              output_hidden_states=True)
    assert out.logits.shape == (3, 30, 3) and torch.isfinite(out.loss)
    assert len(out.hidden_states) == 3


@pytest.mark.parametrize("ff", FFN_KINDS)
def test_gradient_checkpointing_gives_same_gradients(ff):
    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = SparseEncT5ForSequenceClassification(t5_config(ff, dropout_rate=0.0))
        model.sparsify(None)
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.transformer.gradient_checkpointing
        model.train()
        ids, mask = batch()
        model(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2])).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys()
    assert "transformer.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" \
        in plain
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], atol=1e-6, rtol=1e-5)


def test_keep_layers_keeps_the_bottom_blocks():
    model = prunable("gated-gelu")
    model.reorder(*importance(7))
    ids, mask = batch()
    with torch.no_grad():
        full = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    model = drop_layers(model, 1)
    cfg = model.config
    assert cfg.num_hidden_layers == cfg.num_layers == 1
    assert len(cfg.relative_bias_heads) == 1
    assert all(len(v) == 1 for e in cfg.sparsity_map.values() for v in e.values())
    with torch.no_grad():
        hidden = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    torch.testing.assert_close(hidden[0], full[0])
    stack = model.transformer.encoder
    torch.testing.assert_close(hidden[1], stack.final_layer_norm(full[1]))
    with pytest.raises(MiniDiscError):
        drop_layers(model, 2)
