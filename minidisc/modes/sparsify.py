"""Make a finetuned teacher prunable: rank, reorder, and store the sparsity map."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from minidisc.compression.importance import importance
from minidisc.compression.sparsity_map import make_prunable, sparsities, sparsity_key
from minidisc.errors import MiniDiscError
from minidisc.models.families import count_params
from minidisc.modes.common import Context

logger = logging.getLogger(__name__)


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    model = ctx.load(ctx.teacher_path, "--teacher_model_path")
    if getattr(model.config, "layer_heads", None):
        raise MiniDiscError(
            f"--teacher_model_path {ctx.teacher_path}: already densified at sparsity "
            f"{float(model.config.sparsity):g}; sparsify a full finetuned model")
    before = ctx.evaluator.evaluate(model)
    heads, neurons = importance(model, ctx.evaluator.loader(ctx.evaluator.select_split), ctx.rt)
    make_prunable(model, heads, neurons)
    after = ctx.evaluator.evaluate(model)
    table = {}
    for s in sparsities(model.config.sparsity_map):
        model.sparsify(s)
        table[sparsity_key(s)] = count_params(model)
    model.sparsify(None)
    sel = ctx.evaluator.selection
    logger.info("%s %s before reordering %.4f, after %.4f", ctx.evaluator.select_split.name, sel,
                before[sel], after[sel])
    full = table["0"]["encoder"]
    for s, p in table.items():
        logger.info("sparsity %5s%%: encoder params %10d (%5.1f%% kept), total %10d",
                    s, p["encoder"], 100 * p["encoder"] / full, p["total"])
    ctx.save(model, folder / "model")
    return {
        "dev_before_reorder": before,
        "dev_after_reorder": after,
        "params_by_sparsity": table,
        "importance": {"heads": [h.tolist() for h in heads],
                       "neurons_norm": [float(n.norm()) for n in neurons]},
        "final": ctx.evaluator.report(model, folder, "model"),
    }
