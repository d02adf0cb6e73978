"""Finetune a teacher with the task loss (or only test/infer a given model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minidisc.modes.common import Context
from minidisc.training.loop import Evaluation, fit
from minidisc.training.outputs import save_checkpoint


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    args = ctx.args
    model = ctx.load(ctx.teacher_path, "--teacher_model_path")
    if not args.do_train:
        return {"final": ctx.report(model, folder, str(ctx.teacher_path))}

    def compute_loss(batch):
        return model(**ctx.to_device(batch)).loss

    def evaluate(step: int) -> Evaluation:
        metrics = ctx.evaluate(model)
        return Evaluation(metrics[ctx.selection], {"dev": metrics},
                          save=lambda: save_checkpoint(model, ctx.tokenizer, folder / "model"))

    result = fit(model, ctx.train_loader(), compute_loss, evaluate, args, ctx.rt, "finetune")
    best = ctx.load(folder / "model", "best checkpoint")
    return {"final": ctx.report(best, folder, "model"), "train": result.as_dict()}
