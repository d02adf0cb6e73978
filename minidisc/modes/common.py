"""What every mode needs: the task, data, tokenizer, device, and the final report of a model.

`prepare()` reads and checks everything a run needs (files, checkpoints) before any output
folder exists, so bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from minidisc.compression.losses import objective_for
from minidisc.compression.specs import parse_spec
from minidisc.compression.students import check_specs
from minidisc.config import RunConfig, TrainingConfig
from minidisc.data import pipeline
from minidisc.data.pipeline import Split
from minidisc.data.selection import SPLIT, fingerprint, split_off
from minidisc.data.tasks import Task, resolve_task
from minidisc.errors import MiniDiscError
from minidisc.models import (
    check_checkpoint,
    check_family,
    default_model_path,
    load_model,
    resolve_max_length,
)
from minidisc.models.checks import check_teacher
from minidisc.models.families import count_params
from minidisc.registry import resolve_checkpoint
from minidisc.training import evaluate as ev
from minidisc.training.loop import (
    Evaluation,
    FitResult,
    Plan,
    TrainStep,
    fit,
    single_loss,
    to_device,
)
from minidisc.training.outputs import save_checkpoint
from minidisc.training.reporting import Reporter
from minidisc.training.runtime import Runtime, is_sharded, set_seed, setup
from minidisc.training.state import (
    STATE_DIR,
    StopFlag,
    rng_state,
    run_config,
    save_state,
    set_rng_state,
)

logger = logging.getLogger(__name__)


REPORT_KEYS = ("path", "sparsity", "num_layers", "params", "predictions", SPLIT)  # and splits


@dataclass
class Evaluator:
    """How a run evaluates: the split that decides (`select_split`), its dev and test splits,
    the selection metric, the time spent (for results.json), and the report of a saved model
    (metrics, test, predictions)."""

    task: Task
    rt: Runtime
    tokenizer: Any
    dev: list[Split]
    test: list[Split]
    selection: str  # the dev metric that picks checkpoints
    batch_size: int
    do_test: bool = False
    do_infer: bool = False
    # --selection_split: the training examples set aside to decide on (None: dev decides)
    held_out: Split | None = None
    time_s: float = 0.0  # every dev/test evaluation of the run
    _loaders: dict[str, pipeline.EvalBatches] = field(default_factory=dict)
    _majority: dict[str, tuple[str, float] | None] = field(default_factory=dict)

    def loader(self, split: Split) -> pipeline.EvalBatches:
        if split.name not in self._loaders:
            self._loaders[split.name] = pipeline.eval_loader(
                split, self.task, self.tokenizer, self.batch_size,
                self.rt.device)
        return self._loaders[split.name]

    @property
    def select_split(self) -> Split:
        """The split every decision is made on: --selection_split's, else the first dev set
        (MNLI: matched)."""
        return self.held_out or self.dev[0]

    @property
    def decides(self) -> list[Split]:
        """The splits a model's report scores besides the test: the selection split (when
        carved) and every dev set."""
        return [*[self.held_out] * (self.held_out is not None), *self.dev]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics on the split that decides (`select_split`)."""
        metrics, _ = self.evaluate_split(model, self.select_split)
        return metrics

    def evaluate_outputs(self, model: nn.Module) -> tuple[dict[str, float], ev.Outputs]:
        """Metrics and per-example outputs on `select_split`, from one forward pass."""
        return self._outputs(model, self.select_split)

    def report_of(self, record: dict[str, Any]) -> dict[str, Any]:
        """The `report` part of a stage record (what `final` holds in results.json)."""
        keys = (*REPORT_KEYS, *(s.name for s in (*self.dev, *self.test)))
        return {k: record[k] for k in keys if k in record}

    def report(self, model: nn.Module, folder: Path, path: str,
               final: bool = True) -> dict[str, Any]:
        """Numbers of a saved model: every dev set; for the final model also the test metric
        where labelled and the prediction files. Metrics sit under their split's name
        (`dev.acc`; MNLI: `dev_matched.acc`, `dev_mismatched.acc`)."""
        out: dict[str, Any] = {
            "path": path,
            "sparsity": float(getattr(model.config, "sparsity", 0) or 0),
            "num_layers": model.config.num_hidden_layers,
            "params": count_params(model),
            **{s.name: self.evaluate_split(model, s)[0] for s in self.decides},
        }
        for split in self.test if final else []:
            metrics, preds = self.evaluate_split(model, split)
            if self.do_test:
                if metrics is None:
                    logger.warning("%s has no labels: no test metric (use --do_infer)", split.name)
                else:
                    out[split.name] = metrics
            if self.do_infer and self.rt.is_main:
                written = ev.write_predictions(self.task, split, preds, folder)
                out.setdefault("predictions", []).append(written.name)
        return out

    def evaluate_split(self, model: nn.Module, split: Split) -> tuple[dict | None, list]:
        metrics, out = self._outputs(model, split)
        return metrics, out.preds

    def _outputs(self, model: nn.Module, split: Split) -> tuple[dict | None, ev.Outputs]:
        tick = time.perf_counter()
        out = ev.outputs(model, self.loader(split), self.task, self.rt)
        metrics = ev.score(self.task, split, out.preds) if split.has_labels else None
        self.time_s += time.perf_counter() - tick
        if metrics is not None and self.rt.is_main:
            self._warn_one_class(split, out.preds)
        return metrics, out

    def _warn_one_class(self, split: Split, preds: list) -> None:
        """An accuracy equal to the majority-class rate means the model has learnt to answer
        one class whatever the input: say so, the metric alone looks plausible."""
        if split.name not in self._majority:
            self._majority[split.name] = ev.majority_class(self.task, split)
        majority = self._majority[split.name]
        if majority is None:
            return
        acc = ev.accuracy(self.task, split, preds)
        if abs(acc - majority[1]) <= 1e-9:
            logger.warning("%s acc %.4f equals the majority-class rate (%r is %.2f%% of %s): "
                           "the model predicts one class", split.name, acc, majority[0],
                           100 * majority[1], split.name)


@dataclass
class Resumable:
    """What a run saves for --resume and takes up again: the staging folder the states go
    to, the state a --resume continues from, the mode's own `progress` (saved with every
    state), and the wall time spent before the resume."""

    folder: Path | None = None  # the run's staging folder, once it exists
    saved: dict[str, Any] | None = None  # the state a --resume continues from
    progress: dict[str, Any] = field(default_factory=dict)  # the mode's own, saved with it
    wall_before: float = 0.0  # seconds spent before a --resume
    started: float = field(default_factory=time.perf_counter)

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def restore(self, saved: dict[str, Any] | None) -> float:
        """Take up a saved state (the mode reads `progress`, `take` gives the loop's part);
        returns the evaluation time it had spent."""
        if saved is None:
            raise MiniDiscError(f"--resume: {self.folder} holds no readable state")
        self.saved, self.progress, self.wall_before = saved, saved["progress"], saved["wall_s"]
        return saved["eval_s"]

    def resumes(self, stage: str) -> bool:
        return self.saved is not None and self.saved["stage"] == stage

    def take(self, stage: str, rank: int) -> dict[str, Any] | None:
        """The saved state of `stage` (None: it starts afresh), with this process's random
        stream restored (dropout draws per batch) and the shards' folder made a path."""
        saved = self.saved if self.resumes(stage) else None
        if saved is not None:
            set_rng_state(saved.get("rng_by_rank", [saved["rng"]])[rank])
            if "sharded" in saved["trainer"]:
                saved["trainer"]["sharded"] = self.folder / STATE_DIR / saved["trainer"][
                    "sharded"]
        return saved

    def saver(self, stage: str, rt: Runtime, config: dict[str, Any],
              eval_s: Callable[[], float]) -> Callable[[dict[str, Any]], None]:
        """The loop's `on_state` for `stage`: every process calls it (their RNGs; under FSDP
        their shards); rank 0 writes the rest, naming the shards' folder, which only then
        replaces the earlier one. `config`: the flags a --resume must keep."""
        states = self.folder / STATE_DIR

        def on_state(trainer: dict[str, Any]) -> None:
            shards = None
            if "sharded" in trainer:
                shards = "sharded-{}-{}".format(re.sub(r"\W+", "_", stage),
                                                 trainer["fit"]["step"])
                rt.save_sharded(*trainer["sharded"], states / shards)
                trainer = {**trainer, "sharded": shards}
            rngs = rt.gather(rng_state())
            if rt.is_main:
                save_state(self.folder, {"stage": stage, "trainer": trainer, "config": config,
                                         "progress": self.progress, "rng": rngs[0],
                                         "rng_by_rank": rngs, "wall_s": self.wall(),
                                         "eval_s": eval_s()})
                for old in states.glob("sharded-*"):
                    if old.name != shards:
                        shutil.rmtree(old, ignore_errors=True)

        return on_state


@dataclass
class Context:
    """What a run reads (configuration, task, data, tokenizer, device), how it evaluates
    (`evaluator`) and what it saves for --resume (`resumable`), with the training helpers
    every mode shares."""

    cfg: RunConfig
    task: Task
    rt: Runtime
    tokenizer: Any
    teacher_path: Path
    run_dir: Path
    train: Split | None
    dev: list[Split]
    test: list[Split]
    evaluator: Evaluator
    resumable: Resumable = field(default_factory=Resumable)
    stop: StopFlag = field(default_factory=StopFlag)
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> where it starts
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    reporter: Reporter = field(default_factory=Reporter)  # --report_to, set by main

    def train_config(self, epochs: float | None = None) -> TrainingConfig:
        """The loop's settings; `epochs` replaces --num_train_epochs for one training (the
        search iterations of minidisc --search_epochs)."""
        cfg = self.cfg.training
        return cfg if epochs is None else dataclasses.replace(cfg, num_train_epochs=epochs)

    def selection_record(self) -> dict[str, Any]:
        """For results.json: which split decided, and every split's size."""
        held_out = self.evaluator.held_out
        splits = [s for s in (self.train, held_out, *self.dev) if s is not None]
        out = {"split": self.evaluator.select_split.name,
               "selection_split": self.cfg.data.selection_size,
               "sizes": {s.name: len(s.examples) for s in splits}}
        if held_out is not None:  # runs of one pipeline must show the same carve
            out["examples_sha256"] = fingerprint(held_out.examples)
        return out

    def train_loader(self) -> DataLoader:
        sampler = None
        if self.rt.distributed:
            sampler = DistributedSampler(self.train.features, num_replicas=self.rt.world_size,
                                         rank=self.rt.rank, shuffle=True, seed=self.cfg.seed)
        return pipeline.train_loader(self.train, self.task, self.tokenizer,
                                     self.cfg.training.per_device_train_batch_size,
                                     self.cfg.seed,
                                     sampler=sampler)

    def plan(self, epochs: float | None = None) -> Plan:
        """The step budget of a training of this run (what the loop will count)."""
        return Plan.of(len(self.train_loader()), self.train_config(epochs))

    def explain(self) -> None:
        """Log what this run will do (device, models, data, step budget), so the run's log
        says it without the command line."""
        rt, cfg, tr = self.rt, self.cfg, self.cfg.training
        logger.info("%s --mode %s on %s into %s", "resuming" if cfg.resume else "starting",
                    cfg.mode, self.task.name, self.run_dir)
        device = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else "cpu"
        precision = "fp16" if rt.fp16 else "bf16" if rt.bf16 else "fp32"
        ranks = f", {rt.world_size} processes ({rt.strategy})" if rt.distributed else ""
        dtype = cfg.distill.teacher_dtype
        extra = [f"teacher in {dtype}"] * (dtype != "fp32") + [
            "gradient checkpointing"] * tr.gradient_checkpointing
        logger.info("device: %s (%s%s)%s", device, precision, ranks,
                    "".join(f"; {x}" for x in extra))
        for role, m in self.models.items():
            origin = (f" (the final checkpoint of the run folder {m['run_folder']})"
                      if "run_folder" in m else "")
            logger.info("%s: %s%s", role, m["path"], origin)
        splits = [s for s in (self.train, self.evaluator.held_out, *self.dev, *self.test)
                  if s is not None]
        logger.info("examples: %s", ", ".join(f"{s.name} {len(s.examples)}" for s in splits))
        if self.train is None:
            logger.info("no training: evaluation%s only",
                        " and prediction" if cfg.do_infer else "")
            return
        plan = self.plan()
        epochs = tr.num_train_epochs
        batch = " x ".join([str(tr.per_device_train_batch_size)]
                           + [f"{rt.world_size} processes"] * rt.distributed
                           + [f"{tr.num_grad_accum_steps} accumulated"]
                           * (tr.num_grad_accum_steps > 1))
        logger.info("each training: %g epoch%s x %d steps per epoch = %d steps (batch %s); "
                    "evaluation every %d steps and at the end, by %s %s; early stop after %d "
                    "steps without a better score", epochs, "" if epochs == 1 else "s",
                    plan.steps_per_epoch, plan.total, batch, tr.log_interval,
                    self.evaluator.select_split.name, self.evaluator.selection, plan.patience)
        search = cfg.minidisc.search_epochs
        if cfg.mode == "minidisc" and search is not None:
            logger.info("minidisc: the iterations that search for a TA train %g epochs = %d "
                        "steps; the final one trains the student as above",
                        search, self.plan(search).total)

    def load(self, path: str | Path, flag: str, model_type: str | None = None,
             new_head: bool = False) -> nn.Module:
        """`new_head`: the mode trains a task head the checkpoint may lack (load_model)."""
        model = load_model(model_type or self.cfg.model.model_type, path, self.task, flag,
                           new_head)
        return model.to(self.rt.device)

    def save(self, model: nn.Module, path: Path) -> None:
        """Rank 0 writes; of a sharded model every process first helps gather the whole."""
        state = self.rt.full_state_dict(model) if is_sharded(model) else None
        if self.rt.is_main:
            save_checkpoint(model, self.tokenizer, path, state)

    def load_teacher(self) -> tuple[nn.Module, dict[str, Any]]:
        """The frozen teacher in eval mode, and its dev metrics for the report."""
        # an objective without a teacher (ftbert_*) starts from its weights: a head may be new
        untaught = not objective_for(self.cfg.model.model_type,
                                     self.cfg.distill.objective).needs_teacher
        teacher = self.load(self.teacher_path, "--teacher_model_path", new_head=untaught).eval()
        teacher.requires_grad_(False)
        evaluator = self.evaluator
        splits = [s for s in (evaluator.held_out, self.dev[0]) if s is not None]
        info = {"path": str(self.teacher_path),
                "sparsity": float(getattr(teacher.config, "sparsity", 0) or 0),
                "num_layers": teacher.config.num_hidden_layers,
                "params": count_params(teacher),
                **{s.name: evaluator.evaluate_split(teacher, s)[0] for s in splits}}
        return teacher, info

    def check_specs(self, teacher: nn.Module, specs: list[tuple[str, float]]) -> None:
        """Student/TA specs must be buildable from this teacher (that it is prunable where a
        sparsity is asked of it, check_run_teacher checked up front)."""
        check_specs(teacher.config, specs)

    def run_fit(self, model: nn.Module, train_step: TrainStep,
                evaluate: Callable[[int], Evaluation], desc: str, stage: str,
                epochs: float | None = None) -> FitResult:
        """The shared loop with this run's state file: every evaluation saves the loop's state
        with the mode's `progress`; a `--resume`d run continues `stage` where it stopped."""
        saved = self.resumable.take(stage, self.rt.rank)
        if saved is not None:
            logger.info("resuming %s at step %d", desc, saved["trainer"]["fit"]["step"])
        on_state = self.resumable.saver(stage, self.rt, run_config(self.cfg.compute_flags()),
                                        lambda: self.evaluator.time_s)
        if self.cfg.training.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        result = fit(model, self.train_loader(), train_step, evaluate,
                     self.train_config(epochs), self.rt, desc,
                     resume=saved["trainer"] if saved else None, on_state=on_state,
                     stop=self.stop, reporter=self.reporter.stage(stage))
        self.resumable.saved = None
        return result

    def fit_best(self, model: nn.Module, compute_loss, path: Path, desc: str) -> dict[str, Any]:
        """Train with the shared loop, keeping and saving the best dev checkpoint, and leave
        `model` holding the best weights."""
        best: dict[str, torch.Tensor] = {}
        # the best checkpoint saved before the kill
        if self.resumable.resumes(desc) and (path / "config.json").is_file():
            best.update(type(model).from_pretrained(path).state_dict())

        def evaluate(step: int) -> Evaluation:
            metrics = self.evaluator.evaluate(model)

            def keep() -> None:
                full = self.rt.full_state_dict(model)
                best.update({k: v.detach().to("cpu", copy=True) for k, v in full.items()})
                if self.rt.is_main:
                    save_checkpoint(model, self.tokenizer, path, full)

            split = self.evaluator.select_split.name
            return Evaluation(metrics[self.evaluator.selection], {split: metrics}, keep,
                              name=f"{split} {self.evaluator.selection}")

        result = self.run_fit(model, single_loss(compute_loss), evaluate, desc, stage=desc)
        self.rt.load_full_state_dict(model, best)
        return result.as_dict()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return to_device(batch, self.rt.device)



def prepare(cfg: RunConfig) -> Context:
    """Read and check what the run needs; the configuration it returns holds the student
    checkpoint's resolved path."""
    rtc, m, d = cfg.runtime, cfg.model, cfg.data
    rt = setup(rtc.use_cpu, rtc.use_fp16, rtc.local_rank, rtc.use_bf16,
               rtc.distributed_strategy)
    set_seed(cfg.seed)
    if m.teacher_model_path is None:
        teacher = Path(default_model_path())
    else:
        teacher = check_checkpoint(resolve_checkpoint(m.teacher_model_path),
                                   "--teacher_model_path")
    models = {"teacher": _origin(teacher, m.teacher_model_path)}
    if m.student_model_path is not None:
        given = m.student_model_path
        student = str(check_checkpoint(resolve_checkpoint(given), "--student_model_path"))
        check_family(m.model_type, Path(student), "--student_model_path")
        models["student"] = _origin(student, given)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(m, student_model_path=student))
    elif cfg.mode == "distill" and parse_spec(cfg.distill.layer_or_sparsity)[0] == "path":
        models["student"] = _origin(cfg.distill.layer_or_sparsity, cfg.distill.layer_or_sparsity)
    task = resolve_task(d)
    check_run_teacher(cfg, teacher, task)
    tok = pipeline.load_tokenizer(teacher, m.use_slow_tokenizer, pre_split=task.is_ner)

    max_length = resolve_max_length(tok, d.max_length)

    def load(split: str) -> Split:
        return pipeline.load_split(task, d.data_dir, split, tok, max_length)

    # sparsify ranks importance on the selection examples: it needs the same carve
    size = d.selection_size
    carves = size is not None and (cfg.do_train or cfg.mode == "sparsify")
    train = load("train") if cfg.do_train or carves else None
    held_out = None
    if carves:
        train, held_out = split_off(train, task, size, cfg.seed)
        train = train if cfg.do_train else None
    dev = [load(s) for s in task.dev_splits]
    test = [load(s) for s in task.test_splits] if (cfg.do_test or cfg.do_infer) else []
    if not dev[0].has_labels:
        raise MiniDiscError(f"{task.path(d.data_dir, dev[0].name)}: dev set has no labels")
    evaluator = Evaluator(task, rt, tok, dev, test, cfg.training.selection_metric,
                          cfg.training.per_device_eval_batch_size, cfg.do_test, cfg.do_infer,
                          held_out)
    return Context(cfg=cfg, task=task, rt=rt, tokenizer=tok, teacher_path=teacher,
                   run_dir=cfg.run_folder(), train=train, dev=dev,
                   test=test, evaluator=evaluator, models=models)


def check_run_teacher(cfg: RunConfig, path: Path, task: Task) -> None:
    """The teacher must be of --model_type's family; and (every mode but finetune) hold what
    the run asks of it (models/checks.py)."""
    check_family(cfg.model.model_type, path, "--teacher_model_path")
    if cfg.mode == "finetune":
        return
    # ftbert_* (objective ft) only starts from the teacher's weights: a pretrained one will do
    teaches = cfg.mode == "sparsify" or objective_for(cfg.model.model_type,
                                                      cfg.distill.objective).needs_teacher
    check_teacher(path, task, cfg.model.model_type, needs_head=teaches,
                  needs_map=cfg.asks_sparsity(), task_flags=cfg.task_flags())


def _origin(checkpoint: str | Path, given: str | Path | None) -> dict[str, str]:
    """A starting model's absolute path, and the run folder it was resolved from if any."""
    out = {"path": str(Path(checkpoint).resolve())}
    if given is not None and Path(given).resolve() != Path(out["path"]):
        out["run_folder"] = str(Path(given).resolve())
    return out
