"""Finetune a teacher with the task loss (or only test/infer a given model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minidisc.modes.common import Context


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    model = ctx.load(ctx.teacher_path, "--teacher_model_path", new_head=ctx.cfg.do_train)
    if not ctx.cfg.do_train:
        return {"final": ctx.evaluator.report(model, folder, str(ctx.teacher_path))}

    def compute_loss(batch, forward):
        return forward(**ctx.to_device(batch)).loss

    train = ctx.fit_best(model, compute_loss, folder / "model", "finetune")
    return {"final": ctx.evaluator.report(model, folder, "model"), "train": train}
