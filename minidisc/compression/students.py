"""Student initialisation from a spec: NL (bottom N layers), NS (sparsity N) or a path."""

from __future__ import annotations

import copy

from torch import nn

from minidisc.compression.sparsity_map import keep_counts, sparsities
from minidisc.errors import MiniDiscError


def drop_layers(teacher: nn.Module, n: int) -> nn.Module:
    """A copy that keeps the bottom `n` encoder layers (any BERT teacher)."""
    depth = teacher.config.num_hidden_layers
    if not 1 <= n <= depth:
        raise MiniDiscError(f"student spec {n}L: the teacher has {depth} layers (need 1..{depth})")
    student = copy.deepcopy(teacher)
    student.bert.encoder.layer = student.bert.encoder.layer[:n]
    cfg = student.config
    cfg.num_hidden_layers = n
    for name in ("layer_heads", "layer_neurons"):
        if getattr(cfg, name, None):
            setattr(cfg, name, list(getattr(cfg, name))[:n])
    if getattr(cfg, "sparsity_map", None):
        cfg.sparsity_map = {k: {kind: v[:n] for kind, v in entry.items()}
                            for k, entry in cfg.sparsity_map.items()}
    return student


def narrow(teacher: nn.Module, sparsity: float) -> nn.Module:
    """A densified copy at `sparsity`; the teacher must be prunable and not sparser."""
    if not getattr(teacher.config, "sparsity_map", None) or not hasattr(teacher, "sparsify"):
        raise MiniDiscError(
            f"student spec {sparsity:g}S needs a prunable teacher: run --mode sparsify on it "
            "and use --model_type sparsebert_*")
    own = float(getattr(teacher.config, "sparsity", 0) or 0)
    if sparsity < own:
        raise MiniDiscError(
            f"student spec {sparsity:g}S is less sparse than its teacher ({own:g}S)")
    keep_counts(teacher.config, sparsity)  # clear error when not in the map
    student = copy.deepcopy(teacher)
    student.sparsify(sparsity)
    student.densify()
    return student


def check_spec(teacher_config, kind: str, value) -> None:
    """Fail before training when a spec cannot be built from this teacher."""
    if kind == "layer" and not 1 <= value <= teacher_config.num_hidden_layers:
        raise MiniDiscError(f"student spec {value}L: the teacher has "
                            f"{teacher_config.num_hidden_layers} layers")
    if kind == "sparsity":
        smap = getattr(teacher_config, "sparsity_map", None)
        if not smap:
            raise MiniDiscError(f"student spec {value:g}S needs a prunable teacher: "
                                "run --mode sparsify on it first")
        if value not in sparsities(smap):
            avail = ", ".join(f"{s:g}" for s in sparsities(smap))
            raise MiniDiscError(f"sparsity {value:g} is not in the sparsity map (have: {avail})")
