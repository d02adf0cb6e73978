"""What every mode needs: the task, data, tokenizer, device, and the final report of a model.

`prepare()` reads and checks everything a run needs (files, checkpoints) before any output
folder exists, so bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from minidisc.compression.students import check_specs
from minidisc.data import pipeline
from minidisc.data.pipeline import Split
from minidisc.data.tasks import TASKS, Task
from minidisc.errors import MiniDiscError
from minidisc.models import check_checkpoint, default_model_path, load_model
from minidisc.models.sparse_bert import count_params
from minidisc.training import evaluate as ev
from minidisc.training.loop import (
    Evaluation,
    FitResult,
    TrainConfig,
    TrainStep,
    fit,
    single_loss,
)
from minidisc.training.outputs import resolve_checkpoint, save_checkpoint
from minidisc.training.runtime import Runtime, set_seed, setup
from minidisc.training.state import StopFlag, rng_state, save_state, set_rng_state

logger = logging.getLogger(__name__)


REPORT_KEYS = ("path", "sparsity", "num_layers", "params", "dev", "test", "predictions")


def report_of(record: dict[str, Any]) -> dict[str, Any]:
    """The `Context.report` part of a stage record (what `final` holds in results.json)."""
    return {k: record[k] for k in REPORT_KEYS if k in record}


def run_name(args: argparse.Namespace) -> str:
    """The run folder encodes model type, mode, suffix, student spec and task."""
    spec = {
        "distill": args.layer_or_sparsity and Path(args.layer_or_sparsity).name,
        "maxidisc": (args.layer_or_sparsity_path or "").replace(",", "-"),
        "minidisc": f"{args.target_sparsity:g}S_lam{args.lam:g}",
    }.get(args.mode)
    parts = [args.model_type, args.mode, args.model_suffix, spec, args.task_name]
    return "_".join(p for p in parts if p)


@dataclass
class Context:
    args: argparse.Namespace
    task: Task
    rt: Runtime
    tokenizer: Any
    teacher_path: Path
    run_dir: Path
    train: Split | None
    dev: list[Split]
    test: list[Split]
    _loaders: dict[str, pipeline.EvalBatches] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    eval_time_s: float = 0.0  # every dev/test evaluation of the run, for results.json
    folder: Path | None = None  # the run's staging folder, once it exists
    saved: dict[str, Any] | None = None  # the state a --resume continues from
    progress: dict[str, Any] = field(default_factory=dict)  # the mode's own, saved with it
    stop: StopFlag = field(default_factory=StopFlag)

    wall_before: float = 0.0  # seconds spent before a --resume

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_args(self.args)

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def restore(self, saved: dict[str, Any] | None) -> None:
        """Take up a saved state: the mode reads `progress`, `run_fit` the loop's part."""
        if saved is None:
            raise MiniDiscError(f"--resume: {self.folder} holds no readable state")
        self.saved, self.progress = saved, saved["progress"]
        self.wall_before, self.eval_time_s = saved["wall_s"], saved["eval_s"]

    @property
    def selection(self) -> str:
        return self.args.selection_metric

    def eval_loader(self, split: Split) -> pipeline.EvalBatches:
        if split.name not in self._loaders:
            self._loaders[split.name] = pipeline.eval_loader(
                split, self.task, self.tokenizer, self.args.per_device_eval_batch_size,
                self.rt.device)
        return self._loaders[split.name]

    def train_loader(self) -> DataLoader:
        sampler = None
        if self.rt.distributed:
            sampler = DistributedSampler(self.train.features, num_replicas=self.rt.world_size,
                                         rank=self.rt.rank, shuffle=True, seed=self.args.seed)
        return pipeline.train_loader(self.train, self.task, self.tokenizer,
                                     self.args.per_device_train_batch_size, self.args.seed,
                                     sampler=sampler)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics on the selection dev set (the first one; MNLI: matched)."""
        metrics, _ = self.evaluate_split(model, self.dev[0])
        return metrics

    def load(self, path: str | Path, flag: str, model_type: str | None = None) -> nn.Module:
        model = load_model(model_type or self.args.model_type, path, self.task, flag)
        return model.to(self.rt.device)

    def save(self, model: nn.Module, path: Path) -> None:
        if self.rt.is_main:
            save_checkpoint(model, self.tokenizer, path)

    def load_teacher(self) -> tuple[nn.Module, dict[str, Any]]:
        """The frozen teacher in eval mode, and its dev metrics for the report."""
        teacher = self.load(self.teacher_path, "--teacher_model_path").eval()
        teacher.requires_grad_(False)
        info = {"path": str(self.teacher_path),
                "sparsity": float(getattr(teacher.config, "sparsity", 0) or 0),
                "num_layers": teacher.config.num_hidden_layers,
                "params": count_params(teacher),
                "dev": {self.dev[0].name: self.evaluate(teacher)}}
        return teacher, info

    def check_specs(self, teacher: nn.Module, specs: list[tuple[str, float]]) -> None:
        """Student/TA specs must be buildable from this teacher; say which checkpoint is not
        prunable when a sparsity is asked of it."""
        if any(kind == "sparsity" for kind, _ in specs) and not getattr(
                teacher.config, "sparsity_map", None):
            raise MiniDiscError(
                f"--teacher_model_path {self.teacher_path}: not prunable (no sparsity map); "
                "run --mode sparsify on it first")
        check_specs(teacher.config, specs)

    def run_fit(self, model: nn.Module, train_step: TrainStep,
                evaluate: Callable[[int], Evaluation], desc: str, stage: str) -> FitResult:
        """The shared loop with this run's state file: every evaluation saves the loop's state
        with the mode's `progress`; a `--resume`d run continues `stage` where it stopped."""
        saved = self.saved if self.saved and self.saved["stage"] == stage else None
        if saved is not None:
            set_rng_state(saved["rng"])
            logger.info("resuming %s at step %d", desc, saved["trainer"]["fit"]["step"])

        def on_state(trainer: dict[str, Any]) -> None:
            save_state(self.folder, {"stage": stage, "trainer": trainer,
                                     "progress": self.progress, "rng": rng_state(),
                                     "wall_s": self.wall(), "eval_s": self.eval_time_s})

        result = fit(model, self.train_loader(), train_step, evaluate, self.train_config,
                     self.rt, desc, resume=saved["trainer"] if saved else None,
                     on_state=on_state if self.rt.is_main else None, stop=self.stop)
        self.saved = None
        return result

    def fit_best(self, model: nn.Module, compute_loss, path: Path, desc: str) -> dict[str, Any]:
        """Train with the shared loop, keeping and saving the best dev checkpoint, and leave
        `model` holding the best weights."""
        best: dict[str, torch.Tensor] = {}
        resumed = self.saved is not None and self.saved["stage"] == desc
        if resumed and (path / "config.json").is_file():  # the best saved before the kill
            best.update(type(model).from_pretrained(path).state_dict())

        def evaluate(step: int) -> Evaluation:
            metrics = self.evaluate(model)

            def keep() -> None:
                best.update({k: v.detach().to("cpu", copy=True)
                             for k, v in model.state_dict().items()})
                self.save(model, path)

            return Evaluation(metrics[self.selection], {"dev": metrics}, keep)

        result = self.run_fit(model, single_loss(compute_loss), evaluate, desc, stage=desc)
        model.load_state_dict(best)
        return result.as_dict()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.rt.device, non_blocking=True) for k, v in batch.items()}

    def report(self, model: nn.Module, folder: Path, path: str,
               final: bool = True) -> dict[str, Any]:
        """Numbers of a saved model: every dev set; for the final model also the test metric
        where labelled and the prediction files."""
        out: dict[str, Any] = {
            "path": path,
            "sparsity": float(getattr(model.config, "sparsity", 0) or 0),
            "num_layers": model.config.num_hidden_layers,
            "params": count_params(model),
            "dev": {s.name: self.evaluate_split(model, s)[0] for s in self.dev},
        }
        for split in self.test if final else []:
            metrics, preds = self.evaluate_split(model, split)
            if self.args.do_test:
                if metrics is None:
                    logger.warning("%s has no labels: no test metric (use --do_infer)", split.name)
                else:
                    out.setdefault("test", {})[split.name] = metrics
            if self.args.do_infer and self.rt.is_main:
                written = ev.write_predictions(self.task, split, preds, folder)
                out.setdefault("predictions", []).append(written.name)
        return out

    def evaluate_split(self, model: nn.Module, split: Split) -> tuple[dict | None, list]:
        tick = time.perf_counter()
        preds = ev.predict(model, self.eval_loader(split), self.task, self.rt)
        metrics = ev.score(self.task, split, preds) if split.has_labels else None
        self.eval_time_s += time.perf_counter() - tick
        return metrics, preds


def prepare(args: argparse.Namespace) -> Context:
    task = TASKS[args.task_name]
    rt = setup(args.use_cpu, args.use_fp16, args.local_rank, args.use_bf16)
    set_seed(args.seed)
    if args.teacher_model_path is None:
        teacher = Path(default_model_path())
    else:
        teacher = check_checkpoint(resolve_checkpoint(args.teacher_model_path),
                                   "--teacher_model_path")
    if args.student_model_path is not None:
        args.student_model_path = str(check_checkpoint(
            resolve_checkpoint(args.student_model_path), "--student_model_path"))
    tok = pipeline.load_tokenizer(teacher, args.use_slow_tokenizer)

    def load(split: str) -> Split:
        return pipeline.load_split(task, args.data_dir, split, tok, args.max_length)

    train = load("train") if args.do_train else None
    dev = [load(s) for s in task.dev_splits]
    test = [load(s) for s in task.test_splits] if (args.do_test or args.do_infer) else []
    if not dev[0].has_labels:
        raise MiniDiscError(f"{task.path(args.data_dir, dev[0].name)}: dev set has no labels")
    return Context(args=args, task=task, rt=rt, tokenizer=tok, teacher_path=teacher,
                   run_dir=Path(args.output_dir) / run_name(args), train=train, dev=dev,
                   test=test)
