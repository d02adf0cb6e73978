"""Distil along a fixed teacher-assistant path (e.g. 6,4L or 80,90S), one stage at a time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from minidisc.compression.specs import parse_path
from minidisc.modes.common import Context
from minidisc.modes.distill import build_student, distill_stage

logger = logging.getLogger(__name__)


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    teacher, teacher_info = ctx.load_teacher()
    path = parse_path(ctx.cfg.distill.layer_or_sparsity_path)
    ctx.check_specs(teacher, path)
    names = [f"{v:g}{'L' if kind == 'layer' else 'S'}" for kind, v in path]
    if ctx.rt.is_main:
        logger.info("maxidisc: %d stages, teacher -> %s (each trained model teaches the next)",
                    len(path), " -> ".join(names))
    stages = ctx.resumable.progress.setdefault("stages", [])  # finished stages survive a --resume
    if stages:
        teacher = ctx.load(folder / stages[-1]["path"], "--resume").eval().requires_grad_(False)
    for i, (spec, name) in enumerate(zip(path, names), start=1):
        if i <= len(stages):
            continue
        student = build_student(ctx, teacher, spec)
        ckpt = f"stage_{i}_{name}"
        train = distill_stage(ctx, teacher, student, folder / ckpt, f"maxidisc stage {i} {name}")
        last = i == len(path)
        stages.append({"stage": i, "spec": name, "train": train,
                       **ctx.evaluator.report(student, folder, ckpt, final=last)})
        teacher = student.eval().requires_grad_(False)
    final = ctx.evaluator.report_of(stages[-1])
    return {"teacher": teacher_info, "path": ctx.cfg.distill.layer_or_sparsity_path,
            "stages": stages, "final": final}
