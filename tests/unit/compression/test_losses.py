"""Every objective against values computed by hand on tiny tensors (CLS, regression, NER)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from minidisc.compression.losses import OBJECTIVES, distill_loss, objective_for


def _out(logits, hidden):
    return SimpleNamespace(logits=torch.tensor(logits, dtype=torch.float32),
                           hidden_states=tuple(torch.tensor(h, dtype=torch.float32)
                                               for h in hidden))


def _soft_ce(s, t):
    """-sum softmax(t) * log softmax(s), one row, by hand."""
    zt = sum(math.exp(x) for x in t)
    zs = sum(math.exp(x) for x in s)
    return -sum(math.exp(b) / zt * (a - math.log(zs)) for a, b in zip(s, t))


def _ce(s, y):
    return -(s[y] - math.log(sum(math.exp(x) for x in s)))


def _mse(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b)) / len(a)


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


# One sequence of 3 tokens, the last one padding; hidden size 2; 1 layer (+ embeddings).
MASK = [[1, 1, 0]]
S_HID = [[[[1.0, 2.0], [0.0, 1.0], [9.0, 9.0]]], [[[2.0, 0.0], [1.0, 1.0], [5.0, -5.0]]]]
T_HID = [[[[1.5, 2.0], [0.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [3.0, 1.0], [0.0, 0.0]]]]


def _cls_case():
    student = _out([[0.2, -0.4]], [h for h in S_HID])
    teacher = _out([[1.0, 0.5]], [h for h in T_HID])
    batch = {"attention_mask": torch.tensor(MASK), "labels": torch.tensor([1])}
    return student, teacher, batch


def _hidden_by_hand():
    """Mean over the 2 aligned layers of the MSE over the 2 real tokens (padding ignored)."""
    per_layer = []
    for s, t in zip(S_HID, T_HID):
        sq = [(a - b) ** 2 for i in range(2) for a, b in zip(s[0][i], t[0][i])]
        per_layer.append(sum(sq) / len(sq))
    return sum(per_layer) / 2


def _pkd_hidden_by_hand():
    s, t = S_HID[-1][0], T_HID[-1][0]
    sq = [(a - b) ** 2 for i in range(2) for a, b in zip(_unit(s[i]), _unit(t[i]))]
    return sum(sq) / len(sq)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_classification_objectives_by_hand(name):
    student, teacher, batch = _cls_case()
    soft = _soft_ce([0.2, -0.4], [1.0, 0.5])
    label = _ce([0.2, -0.4], 1)
    hidden = _hidden_by_hand()
    expected = {
        "sparse": (hidden + soft) / 2,
        "kd": (soft + label) / 2,
        "pkd": (_pkd_hidden_by_hand() + soft + label) / 3,
        "ft": label,
        "sparse_kd": (hidden + (soft + label) / 2) / 2,
    }[name]
    got = distill_loss(name, student, teacher, batch, temperature=1.0, regression=False,
                       token_level=False)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_temperature_scales_soft_ce_by_t_squared():
    student, teacher, batch = _cls_case()
    t = 2.0
    soft = _soft_ce([0.2 / t, -0.4 / t], [1.0 / t, 0.5 / t]) * t * t
    label = _ce([0.2, -0.4], 1)
    got = distill_loss("kd", student, teacher, batch, temperature=t, regression=False,
                       token_level=False)
    assert got.item() == pytest.approx((soft + label) / 2, rel=1e-6)


def test_regression_uses_mse_to_teacher_and_label():
    student = _out([[2.0], [1.0]], S_HID)
    teacher = _out([[2.5], [0.0]], T_HID)
    batch = {"attention_mask": torch.tensor(MASK), "labels": torch.tensor([3.0, 1.0])}
    to_teacher = _mse([2.0, 1.0], [2.5, 0.0])
    to_label = _mse([2.0, 1.0], [3.0, 1.0])
    got = distill_loss("kd", student, teacher, batch, temperature=1.0, regression=True,
                       token_level=False)
    assert got.item() == pytest.approx((to_teacher + to_label) / 2, rel=1e-6)
    got = distill_loss("ft", student, teacher, batch, temperature=1.0, regression=True,
                       token_level=False)
    assert got.item() == pytest.approx(to_label, rel=1e-6)


def test_ner_soft_ce_only_on_first_subtokens():
    """[CLS] w1 ##piece w2 [SEP]: the soft CE averages over w1 and w2 only."""
    s_logits = [[[3.0, 0.0], [0.5, 0.1], [-2.0, 2.0], [0.0, 1.0], [4.0, -4.0]]]
    t_logits = [[[-3.0, 3.0], [1.0, 0.0], [2.0, -2.0], [0.3, 0.2], [-4.0, 4.0]]]
    hidden = [[[[0.0, 0.0]] * 5]] * 2
    student, teacher = _out(s_logits, hidden), _out(t_logits, hidden)
    batch = {"attention_mask": torch.ones(1, 5, dtype=torch.long),
             "labels": torch.tensor([[-100, 1, -100, 0, -100]])}
    soft = (_soft_ce(s_logits[0][1], t_logits[0][1]) + _soft_ce(s_logits[0][3], t_logits[0][3])) / 2
    label = (_ce(s_logits[0][1], 1) + _ce(s_logits[0][3], 0)) / 2
    got = distill_loss("sparse", student, teacher, batch, temperature=1.0, regression=False,
                       token_level=True)
    assert got.item() == pytest.approx(soft / 2, rel=1e-6)  # hidden term is 0 here
    got = distill_loss("kd", student, teacher, batch, temperature=1.0, regression=False,
                       token_level=True)
    assert got.item() == pytest.approx((soft + label) / 2, rel=1e-6)


def test_pkd_ner_and_padding():
    student = _out([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], S_HID)
    teacher = _out([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]], T_HID)
    batch = {"attention_mask": torch.tensor(MASK), "labels": torch.tensor([[-100, 0, -100]])}
    soft = _soft_ce([0.0, 1.0], [1.0, 0.0])
    label = _ce([0.0, 1.0], 0)
    got = distill_loss("pkd", student, teacher, batch, temperature=1.0, regression=False,
                       token_level=True)
    assert got.item() == pytest.approx((_pkd_hidden_by_hand() + soft + label) / 3, rel=1e-6)


@pytest.mark.parametrize("model_type, name", [
    ("sparsebert_cls", "sparse"), ("kdbert_ner", "kd"), ("pkdbert_cls", "pkd"),
    ("ftbert_ner", "ft")])
def test_model_type_picks_the_reference_objective(model_type, name):
    assert objective_for(model_type).name == name
    assert objective_for(model_type, "sparse_kd").name == "sparse_kd"
    assert objective_for("ftbert_cls").needs_teacher is False
