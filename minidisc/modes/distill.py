"""Distil a teacher into one student (layer-dropped NL, sparsified NS, or a checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from minidisc.cli import parse_spec
from minidisc.compression.losses import distill_loss
from minidisc.compression.students import drop_layers, narrow
from minidisc.modes.common import Context


def build_student(ctx: Context, teacher: nn.Module, spec: tuple) -> nn.Module:
    kind, value = spec
    if kind == "layer":
        student = drop_layers(teacher, value)
    elif kind == "sparsity":
        student = narrow(teacher, value)
    else:
        student = ctx.load(value, "--layer_or_sparsity")
    student.requires_grad_(True)
    return student.train()


def objective(ctx: Context, teacher: nn.Module):
    """Loss of a student output against the teacher's, per SPEC's distillation objective."""
    task, args = ctx.task, ctx.args
    use_labels = args.model_type.startswith("kdbert")

    def loss(student_out, teacher_out, batch) -> torch.Tensor:
        return distill_loss(student_out, teacher_out, batch, temperature=args.temperature,
                            regression=task.is_regression, token_level=task.is_ner,
                            use_labels=use_labels)

    return loss


def teacher_forward(teacher: nn.Module, inputs: dict[str, torch.Tensor]):
    with torch.no_grad():
        return teacher(**inputs, output_hidden_states=True)


def distill_stage(ctx: Context, teacher: nn.Module, student: nn.Module, path: Path,
                  desc: str) -> dict[str, Any]:
    """Train `student` against `teacher`; `student` ends holding its best dev weights."""
    loss = objective(ctx, teacher)

    def compute_loss(batch):
        b = ctx.to_device(batch)
        inputs = {k: v for k, v in b.items() if k != "labels"}
        return loss(student(**inputs, output_hidden_states=True),
                    teacher_forward(teacher, inputs), b)

    return ctx.fit_best(student, compute_loss, path, desc)


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    args = ctx.args
    teacher, teacher_info = ctx.load_teacher()
    if args.student_model_path:
        spec = ("path", args.student_model_path)
    else:
        spec = parse_spec(args.layer_or_sparsity)
    if spec[0] != "path":
        ctx.check_specs(teacher, [spec])
    student = build_student(ctx, teacher, spec)
    train = distill_stage(ctx, teacher, student, folder / "model", f"distill {spec[1]}")
    return {"teacher": teacher_info, "student_spec": args.layer_or_sparsity,
            "final": ctx.report(student, folder, "model"), "train": train}
