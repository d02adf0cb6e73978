"""The narrowable BERT: reordering is exact, virtual narrowing equals densifying, round trips."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from minidisc.compression.sparsity_map import (
    SPARSITIES,
    build_map,
    keep_counts,
    make_prunable,
    num_removed,
    random_importance,
    sparsities,
)
from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError
from minidisc.models import load_model
from minidisc.models.families import count_params
from minidisc.models.sparse_bert import (
    SparseBertForSequenceClassification,
    SparseBertForTokenClassification,
)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _prunable(cls=SparseBertForSequenceClassification, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = cls(tiny_config(num_labels=3, **kw)).eval()
    make_prunable(model, *random_importance(model, seed))
    return model


@pytest.mark.parametrize("cls", [SparseBertForSequenceClassification,
                                 SparseBertForTokenClassification])
def test_reorder_keeps_outputs(cls):
    torch.manual_seed(0)
    model = cls(tiny_config(num_labels=3)).eval()
    x = _inputs()
    with torch.no_grad():
        before = model(**x, output_hidden_states=True)
        model.reorder(*random_importance(model, 1))
        after = model(**x, output_hidden_states=True)
    torch.testing.assert_close(after.logits, before.logits, atol=1e-5, rtol=0)
    for a, b in zip(after.hidden_states, before.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    query = model.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(query, cls(tiny_config(num_labels=3)).bert.encoder.layer[0]
                           .attention.self.query.weight)


def test_map_counts_match_rounded_totals_and_are_monotone():
    model = _prunable(num_hidden_layers=3, num_attention_heads=4, intermediate_size=40)
    smap = model.config.sparsity_map
    assert sparsities(smap) == [float(s) for s in SPARSITIES]
    prev_h, prev_n = [0] * 3, [0] * 3
    for s in sparsities(smap):
        entry = smap[f"{s:g}"]
        assert sum(entry["heads"]) == num_removed(s, 12)
        assert sum(entry["neurons"]) == num_removed(s, 120)
        assert all(a >= b for a, b in zip(entry["heads"], prev_h))
        assert all(a >= b for a, b in zip(entry["neurons"], prev_n))
        prev_h, prev_n = entry["heads"], entry["neurons"]
    assert num_removed(85, 72) == 61 and num_removed(50, 5) == 3


def test_map_removes_globally_least_important():
    heads = [torch.tensor([0.9, 0.1, 0.8, 0.7]), torch.tensor([0.05, 0.6, 0.5, 0.4])]
    neurons = [torch.ones(4), torch.ones(4)]
    smap = build_map(heads, neurons, levels=[50])
    # the four lowest: 0.05 (L1), 0.1 (L0), 0.4 (L1), 0.5 (L1)
    assert smap["50"]["heads"] == [1, 3]


@pytest.mark.parametrize("s", [50, 80, 90, 95])
@pytest.mark.parametrize("cls", [SparseBertForSequenceClassification,
                                 SparseBertForTokenClassification])
def test_virtual_narrowing_equals_densified(cls, s):
    model = _prunable(cls)
    x = _inputs()
    with torch.no_grad():
        model.sparsify(s)
        virtual = model(**x, output_hidden_states=True)
        virtual_params = count_params(model)
        model.densify()
        dense = model(**x, output_hidden_states=True)
    torch.testing.assert_close(dense.logits, virtual.logits, atol=1e-5, rtol=0)
    for a, b in zip(dense.hidden_states, virtual.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert count_params(model) == virtual_params
    heads, neurons = keep_counts(model.config, s)
    assert model.config.layer_heads == heads and model.config.layer_neurons == neurons
    assert sum(p.numel() for p in model.bert.encoder.parameters()) == virtual_params["encoder"]
    assert model.config.sparsity == s
    assert min(sparsities(model.config.sparsity_map)) == s


def test_layer_without_heads_or_neurons_keeps_residual():
    model = _prunable()
    n = model.config.num_attention_heads
    model.config.sparsity_map["99"] = {"heads": [n, 0], "neurons": [64, 10]}
    x = _inputs()
    with torch.no_grad():
        model.sparsify(99)
        virtual = model(**x).logits
        model.densify()
        dense = model(**x).logits
    assert model.config.layer_heads == [0, n]
    assert model.bert.encoder.layer[0].attention.self.query.weight.shape[0] == 0
    torch.testing.assert_close(dense, virtual, atol=1e-5, rtol=0)


def test_densified_round_trip_and_further_narrowing(tmp_path):
    model = _prunable()
    with torch.no_grad():
        model.sparsify(70)
        model.densify()
    model.save_pretrained(tmp_path)
    loaded = SparseBertForSequenceClassification.from_pretrained(tmp_path).eval()
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x).logits, model(**x).logits, atol=1e-6, rtol=0)
        assert loaded.config.sparsity == 70
        assert sparsities(loaded.config.sparsity_map) == [70, 80, 85, 90, 95]
        model.sparsify(90)
        loaded.sparsify(90)
        torch.testing.assert_close(loaded(**x).logits, model(**x).logits, atol=1e-6, rtol=0)
    with pytest.raises(MiniDiscError, match="not in the sparsity map"):
        loaded.sparsify(50)


def test_not_prunable_model_refuses_sparsity():
    model = SparseBertForSequenceClassification(tiny_config(num_labels=2))
    with pytest.raises(MiniDiscError, match="not prunable"):
        model.sparsify(90)


def test_loads_plain_bert_and_matches_transformers(tiny_bert):
    from transformers import BertModel

    ref = BertModel.from_pretrained(tiny_bert).eval()
    model = load_model("sparsebert_cls", tiny_bert, TASKS["sst2"], "--teacher_model_path",
                       new_head=True).eval()
    x = _inputs()
    with torch.no_grad():
        a = ref(**x, output_hidden_states=True).hidden_states
        b = model(**x, output_hidden_states=True).hidden_states
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=0)


def test_head_and_neuron_masks_get_gradients():
    model = _prunable()
    hm = torch.ones(2, 4, requires_grad=True)
    nm = torch.ones(2, 64, requires_grad=True)
    loss = model(**_inputs(), labels=torch.tensor([0, 1, 2]), head_mask=hm, neuron_mask=nm).loss
    gh, gn = torch.autograd.grad(loss, [hm, nm])
    assert gh.abs().sum() > 0 and gn.abs().sum() > 0
    with torch.no_grad():
        masked = model(**_inputs(), head_mask=torch.zeros(2, 4), neuron_mask=nm).logits
        model.sparsify(None)
        model.config.sparsity_map["100"] = {"heads": [4, 4], "neurons": [0, 0]}
        model.sparsify(100)
        narrowed = model(**_inputs()).logits
    torch.testing.assert_close(masked, narrowed, atol=1e-5, rtol=0)
