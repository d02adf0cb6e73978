"""The sparsity map: for each sparsity, how many heads and neurons each layer loses.

Counts are relative to the original full model, so a densified model at sparsity s can still
be narrowed to any map entry >= s. Sparsities are numbers; JSON keys are their `%g` strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Reading the map is the model's (its saved code must run without MiniDisc); re-exported here.
from minidisc.models.sparse_bert import (  # noqa: F401
    SparsityMap,
    keep_counts,
    map_entry,
    sparsity_key,
    truncate_map,
)

SPARSITIES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95)


def sparsities(smap: SparsityMap) -> list[float]:
    """Map keys as numbers, ascending (numerically: 85 < 90 < 95, never '85' > '9')."""
    return sorted(float(k) for k in smap)


def num_removed(sparsity: float, total: int) -> int:
    """round(s/100 * total), halves rounded up."""
    return int(math.floor(sparsity / 100 * total + 0.5))


def _removed_per_layer(importance: Sequence[torch.Tensor], sparsity: float) -> list[int]:
    """Globally the least important units go first; count how many fall in each layer."""
    layer_of = torch.cat([torch.full((len(imp),), i) for i, imp in enumerate(importance)])
    values = torch.cat([imp.detach().float().cpu() for imp in importance])
    order = torch.argsort(values, stable=True)
    removed = layer_of[order[: num_removed(sparsity, len(values))]]
    return torch.bincount(removed, minlength=len(importance)).tolist()


def build_map(head_importance: Sequence[torch.Tensor], neuron_importance: Sequence[torch.Tensor],
              levels: Sequence[float] = SPARSITIES) -> SparsityMap:
    """Map from per-layer-normalised importances of a full (not densified) model."""
    return {
        sparsity_key(s): {
            "heads": _removed_per_layer(head_importance, s),
            "neurons": _removed_per_layer(neuron_importance, s),
        }
        for s in levels
    }


def make_prunable(model, head_importance: Sequence[torch.Tensor],
                  neuron_importance: Sequence[torch.Tensor],
                  levels: Sequence[float] = SPARSITIES) -> None:
    """Sort a full model's heads and neurons by importance and store the sparsity map in its
    config: what --mode sparsify does with measured importance (benchmarks and tests with
    `random_importance`, where any fixed prunable model serves)."""
    model.reorder(head_importance, neuron_importance)
    model.config.sparsity = 0.0
    model.config.sparsity_map = build_map(head_importance, neuron_importance, levels)


def random_importance(model, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Seeded uniform importances for every head and neuron of a full model."""
    g = torch.Generator().manual_seed(seed)
    heads, neurons = model.base_model.widths()
    return ([torch.rand(h, generator=g) for h in heads],
            [torch.rand(n, generator=g) for n in neurons])
