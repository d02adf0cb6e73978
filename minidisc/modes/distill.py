"""Distil a teacher into one student (layer-dropped NL, sparsified NS, or a checkpoint)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minidisc.compression.losses import Objective, distill_loss, objective_for
from minidisc.compression.specs import parse_spec
from minidisc.compression.students import drop_layers, narrow
from minidisc.data.tasks import Task
from minidisc.modes.common import Context
from minidisc.training.loop import to_device
from minidisc.training.runtime import shard

logger = logging.getLogger(__name__)


def build_student(ctx: Context, teacher: nn.Module, spec: tuple) -> nn.Module:
    kind, value = spec
    if kind == "layer":
        student = drop_layers(teacher, value)
    elif kind == "sparsity":
        student = narrow(teacher, value)
    else:
        student = ctx.load(value, "--layer_or_sparsity", new_head=True)  # a pretrained one
    student.requires_grad_(True)
    return student.train()


TEACHER_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Distiller:
    """One objective (from --model_type / --objective) applied to student outputs; the teacher
    runs once per batch and only when the objective reads it (ftbert_*: never).

    The teacher is cast in place to `teacher_dtype` (it only runs forward, so half precision
    halves its memory at no training cost): build students from it before this. With `shard`
    (FSDP) it is sharded like the student."""

    def __init__(self, teacher: nn.Module, objective: Objective, task: Task,
                 device: torch.device, *, temperature: float = 1.0,
                 teacher_dtype: str = "fp32", shard_teacher: bool = False):
        self.teacher = teacher.to(TEACHER_DTYPES[teacher_dtype])
        self.objective, self.task, self.device = objective, task, device
        self.temperature = temperature
        if shard_teacher and objective.needs_teacher:
            shard(teacher)

    def split(self, batch: dict[str, torch.Tensor]) -> tuple[dict, dict, Any]:
        """Device batch, model inputs, and the teacher's output for it (None if unused)."""
        b = to_device(batch, self.device)
        inputs = {k: v for k, v in b.items() if k != "labels"}
        t_out = None
        if self.objective.needs_teacher:
            with torch.no_grad():
                t_out = self.teacher(**inputs, output_hidden_states=self.objective.needs_hidden)
        return b, inputs, t_out

    def loss(self, student: nn.Module, inputs: dict, t_out: Any, batch: dict) -> torch.Tensor:
        s_out = student(**inputs, output_hidden_states=self.objective.needs_hidden)
        return distill_loss(self.objective.name, s_out, t_out, batch,
                            temperature=self.temperature, regression=self.task.is_regression,
                            token_level=self.task.is_ner)


def distiller_for(ctx: Context, teacher: nn.Module) -> Distiller:
    """This run's Distiller: its objective, temperature, teacher precision and sharding."""
    cfg = ctx.cfg
    return Distiller(teacher, objective_for(cfg.model.model_type, cfg.distill.objective),
                     ctx.task, ctx.rt.device, temperature=cfg.distill.temperature,
                     teacher_dtype=cfg.distill.teacher_dtype, shard_teacher=ctx.rt.fsdp)


def distill_stage(ctx: Context, teacher: nn.Module, student: nn.Module, path: Path,
                  desc: str) -> dict[str, Any]:
    """Train `student` against `teacher`; `student` ends holding its best dev weights."""
    distiller = distiller_for(ctx, teacher)

    def compute_loss(batch, forward):
        b, inputs, t_out = distiller.split(batch)
        return distiller.loss(forward, inputs, t_out, b)

    return ctx.fit_best(student, compute_loss, path, desc)


def run(ctx: Context, folder: Path) -> dict[str, Any]:
    cfg = ctx.cfg
    teacher, teacher_info = ctx.load_teacher()
    if cfg.model.student_model_path:
        spec = ("path", cfg.model.student_model_path)
    else:
        spec = parse_spec(cfg.distill.layer_or_sparsity)
    if spec[0] != "path":
        ctx.check_specs(teacher, [spec])
    student = build_student(ctx, teacher, spec)
    if ctx.rt.is_main:
        logger.info("distill: one student (%s) from the teacher, objective %s",
                    spec[1] if spec[0] == "path" else cfg.distill.layer_or_sparsity,
                    objective_for(cfg.model.model_type, cfg.distill.objective).name)
    train = distill_stage(ctx, teacher, student, folder / "model", f"distill {spec[1]}")
    return {"teacher": teacher_info, "student_spec": cfg.distill.layer_or_sparsity,
            "objective": objective_for(cfg.model.model_type, cfg.distill.objective).name,
            "final": ctx.evaluator.report(student, folder, "model"), "train": train}
