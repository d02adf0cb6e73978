"""Student initialisation from a spec: NL (bottom N layers), NS (sparsity N) or a path."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from minidisc.compression.sparsity_map import map_entry
from minidisc.errors import MiniDiscError
from minidisc.training.runtime import copy_model


def drop_layers(teacher: nn.Module, n: int) -> nn.Module:
    """A copy that keeps the bottom `n` encoder layers (a teacher of any family, sharded or
    not: see `copy_model`)."""
    depth = teacher.config.num_hidden_layers
    if not 1 <= n <= depth:
        raise MiniDiscError(f"student spec {n}L: the teacher has {depth} layers (need 1..{depth})")
    student = copy_model(teacher)
    student.base_model.keep_layers(n)
    return student


def narrow(teacher: nn.Module, sparsity: float) -> nn.Module:
    """A densified copy at `sparsity` (the model's own `sparsify` rejects a sparsity that is not
    in its map or below its own); a sharded teacher is gathered first (`copy_model`)."""
    if not hasattr(teacher, "sparsify"):
        raise MiniDiscError(
            f"student spec {sparsity:g}S needs a prunable teacher (a sparsify run's model)")
    student = copy_model(teacher)
    student.sparsify(sparsity)
    student.densify()
    return student


def check_specs(teacher_config, specs: Sequence[tuple[str, float]]) -> None:
    """Fail before any training when a student or TA path cannot be built from this teacher:
    depths within the teacher's and not growing, sparsities in the map and not shrinking."""
    depth = teacher_config.num_hidden_layers
    prev = float(getattr(teacher_config, "sparsity", 0) or 0)
    for kind, value in specs:
        if kind == "layer":
            if not 1 <= value <= depth:
                raise MiniDiscError(f"student spec {value}L: the teacher has {depth} layers")
            depth = value
        else:
            map_entry(teacher_config, value)  # not prunable / not in the map
            if value < prev:
                raise MiniDiscError(f"student spec {value:g}S is less sparse than its teacher "
                                    f"({prev:g}S)")
            prev = value
