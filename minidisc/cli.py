"""The command line: every flag comes from the typed configuration (minidisc/config.py),
built once here from the flags and an optional `--config FILE`; the argparse Namespace does not
leave this module.

Checks that need no file I/O happen in the configuration, before any work starts; checks that
read files (data folders, checkpoints; `check_teacher` below) happen in the mode's setup, still
before any output exists. Building the parser imports no torch: `--help`, `--print_config`
and flag errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from minidisc.compression.specs import parse_path, parse_spec
from minidisc.config import DEFAULT_DATA_DIR, FLAGS, RunConfig, read_config_file
from minidisc.errors import MiniDiscError
from minidisc.training.reporting import check as check_reporter

if TYPE_CHECKING:
    from minidisc.data.tasks import Task


PRINT_FORMATS = ("yaml", "json")
GROUP_ORDER = ("models", "data", "training", "hardware", "what to do", "distillation")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every usage error goes through one path."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MiniDiscError(message)


def build_parser(defaults: dict | None = None) -> argparse.ArgumentParser:
    """run.py's parser, one option per configuration field; `defaults` (a config file's
    values) replace the fields' defaults, so command-line flags override the file."""
    defaults = defaults or {}
    p = _Parser(
        prog="run.py",
        description="MiniDisc: finetune, sparsify and distill BERT/RoBERTa models with a "
        "teacher-assistant schedule found in one trial.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    groups: dict[str, argparse._ActionsContainer] = {"run": p}
    for name in GROUP_ORDER:
        groups[name] = p.add_argument_group(name)
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="read flags from a YAML or JSON file (flag: value; flags given here "
                   "override it); a run's results.json replays that run")
    g.add_argument("--print_config", nargs="?", const="yaml", choices=PRINT_FORMATS,
                   default=None, help="print the resolved configuration (yaml or json) and "
                   "exit without running")
    for f in FLAGS.values():
        if f.group not in groups:
            groups[f.group] = p.add_argument_group(f.group)
        names = [f"--{f.name}", *f.aliases]
        default = defaults.get(f.name, f.default)
        if f.type is bool:
            groups[f.group].add_argument(*names, action="store_true", default=default,
                                         help=f.help)
            continue
        groups[f.group].add_argument(*names, type=f.type, default=default, help=f.help,
                                     choices=f.choices,
                                     required=f.required and f.name not in defaults)
    return p


def parse(argv: Sequence[str] | None = None) -> tuple[RunConfig, str | None]:
    """The resolved configuration of a command line, and --print_config's format (None:
    run it)."""
    pre = _Parser(add_help=False)
    pre.add_argument("--config", default=None)
    given, _ = pre.parse_known_args(argv)
    from_file = {} if given.config is None else read_config_file(given.config)
    ns = build_parser(from_file).parse_args(argv)
    cfg = RunConfig.from_flags({name: getattr(ns, name) for name in FLAGS}).resolve()
    check_reporter(cfg.report_to)
    return cfg, ns.print_config


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    """The resolved configuration of a command line (`--print_config` ignored)."""
    return parse(argv)[0]


# --- the teacher, read from its files (called by modes.common.prepare, before any output) ---


def _weight_names(folder: Path) -> set[str] | None:
    """Tensor names of a checkpoint, from a weights index or the safetensors header (no tensor
    is read); None when they cannot be listed (loading will say what is wrong)."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            try:
                return set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    try:
        if (folder / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(folder / "model.safetensors", "pt") as f:
                return set(f.keys())
        if (folder / "pytorch_model.bin").is_file():
            import torch

            return set(torch.load(folder / "pytorch_model.bin", map_location="cpu",
                                  weights_only=True, mmap=True))
    except Exception:  # noqa: BLE001 -- safetensors/torch raise many kinds; loading reports
        return None
    return None


def _task_flags(cfg: RunConfig) -> str:
    """The flags that name this run's task and data, for a command the user can copy."""
    from minidisc.data.tasks import CUSTOM, CUSTOM_FLAGS

    d = cfg.data
    flags = ["--task_name", f"glue/{d.task_name}" if d.fetch_glue else d.task_name]
    if d.task_name == CUSTOM:
        flags += [x for f in CUSTOM_FLAGS if getattr(d, f) is not None
                  for x in (f"--{f}", getattr(d, f))]
    elif d.data_dir != DEFAULT_DATA_DIR:
        flags += ["--data_dir", d.data_dir]
    return shlex.join(flags)


def _needs_map(cfg: RunConfig) -> bool:
    """Whether this run asks the teacher for a sparsity (NS, ...S paths, MiniDisc)."""
    if cfg.mode == "distill" and cfg.model.student_model_path is None:
        return parse_spec(cfg.distill.layer_or_sparsity)[0] == "sparsity"
    if cfg.mode == "maxidisc":
        return parse_path(cfg.distill.layer_or_sparsity_path)[0][0] == "sparsity"
    return cfg.mode == "minidisc"


def check_teacher(cfg: RunConfig, path: Path, task: Task) -> None:
    """A teacher must be of --model_type's family; and (every mode but finetune) have a
    trained task head, a sparsity map where a sparsity is asked of it, and (a custom task) the
    training data's labels; each refusal names the step to run. A different label count is
    load_model's check."""
    from minidisc.compression.losses import objective_for
    from minidisc.models import check_family, read_config

    flag, where = "--teacher_model_path", shlex.quote(str(path))
    check_family(cfg.model.model_type, path, flag)
    if cfg.mode == "finetune":
        return
    # ftbert_* (objective ft) only starts from the teacher's weights: a pretrained one will do
    teaches = cfg.mode == "sparsify" or objective_for(cfg.model.model_type,
                                                      cfg.distill.objective).needs_teacher
    names = _weight_names(path)
    if teaches and names is not None and not any(n.startswith("classifier.") for n in names):
        raise MiniDiscError(
            f"{flag} {path}: its classification head is not trained: finetune it first: "
            f"python run.py --mode finetune {_task_flags(cfg)} --teacher_model_path {where}, "
            "then pass the run folder it writes (its weights have no classifier: a plain "
            "pretrained model?)")
    config = read_config(path, flag)
    if _needs_map(cfg) and not config.get("sparsity_map"):
        raise MiniDiscError(
            f"{flag} {path}: not prunable (its config has no sparsity_map): run --mode sparsify "
            f"first: python run.py --mode sparsify {_task_flags(cfg)} --teacher_model_path "
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
