"""Write bert_scripts/run_<mode>_<task>.sh from one template and one hyper-parameter table.

`run_<mode>_custom.sh` run a user's own files (--task_name custom), named by environment
variables (TRAIN_FILE, VALIDATION_FILE, ...; see CUSTOM_ENV).

Why generated: the reference ships near-identical copies per task that drift apart. Here every
script comes from the table below, so a change is made once:

    python bert_scripts/generate.py            # rewrite the scripts next to this file
    python bert_scripts/generate.py --out DIR  # write them elsewhere (the tests compare)

tests/cli/test_scripts.py fails when the committed scripts differ from what this writes.
Standard library only, so it runs before any dependency is installed.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

REF = "reference (GeneZC/MiniDisc bert_scripts/run_*_{}.sh)"
CHOSEN_SMALL = "chosen: small task, like mrpc"
CHOSEN_LARGE = "chosen: large task, like qqp with fewer epochs"


@dataclass(frozen=True)
class Hparams:
    """Per-task values; `source` says where they come from (reference scripts or chosen)."""

    source: str
    selection_metric: str  # the task's default metric (SPEC task table)
    batch_size: int
    learning_rate: str  # kept as text so the scripts show e.g. 3e-5, not 3e-05
    epochs: int  # distillation, maxidisc and minidisc
    finetune_epochs: int
    patience: int  # --num_patience_epochs
    log_interval: int  # optimiser steps between dev evaluations
    max_length: int = 128
    ner: bool = False
    finetune_source: str = "chosen"  # where finetune_epochs comes from


# Shared by every task and mode; all from the reference scripts (identical in each of them).
COMMON = (
    ("--per_device_eval_batch_size", "32"),
    ("--weight_decay", "1e-2"),
    ("--warmup_proportion", "0.1"),
    ("--max_grad_norm", "5.0"),
    ("--seed", "776"),
)

# Reference values exist only for mrpc, qqp and conll; the rest are chosen by analogy.
# Small GLUE sets (< 10k training rows) take mrpc's values, with log_interval 10-20 steps
# (about 20 dev evaluations per epoch; wnli has only 40 steps per epoch). Large ones
# (> 60k rows) take qqp's batch size and learning rate but fewer epochs and less patience
# (they converge within a few long epochs), and log_interval gives about 4 evaluations per
# epoch, as qqp's 3000 does. Finetuning epochs: conll's 3 is the reference; the others are
# chosen (3 for large tasks, 5 for small ones).
TASKS: dict[str, Hparams] = {
    # source, selection metric, batch size, learning rate, epochs, finetune epochs,
    # patience epochs, log interval
    "mrpc": Hparams(REF.format("mrpc"), "acc_and_f1", 16, "3e-5", 10, 5, 5, 10),
    "qqp": Hparams(REF.format("qqp"), "acc_and_f1", 32, "2e-5", 10, 3, 5, 3000),
    "conll": Hparams(REF.format("conll"), "f1", 32, "2e-5", 10, 3, 5, 100, ner=True,
                     finetune_source=REF.format("conll")),
    "mnli": Hparams(CHOSEN_LARGE, "acc", 32, "2e-5", 5, 3, 2, 3000),
    "qnli": Hparams(CHOSEN_LARGE, "acc", 32, "2e-5", 5, 3, 2, 1000),
    "sst2": Hparams(CHOSEN_LARGE, "acc", 32, "2e-5", 5, 3, 2, 500),
    "rte": Hparams(CHOSEN_SMALL, "acc", 16, "3e-5", 10, 5, 5, 10),
    "cola": Hparams(CHOSEN_SMALL, "mcc", 16, "3e-5", 10, 5, 5, 20),
    "stsb": Hparams(CHOSEN_SMALL, "corr", 16, "3e-5", 10, 5, 5, 20),
    "wnli": Hparams(CHOSEN_SMALL, "acc", 16, "3e-5", 10, 5, 5, 10),
    # The offline demo set is tiny: short inputs, frequent evaluation, a higher learning rate
    # so a few epochs show progress, patience = epochs (no early stop).
    "demo": Hparams("chosen: tiny offline demo", "acc", 16, "5e-5", 3, 3, 3, 5, max_length=64,
                    finetune_source="chosen: tiny offline demo"),
}

# A user's own data (--task_name custom): size unknown, so the small tasks' values with an
# evaluation every 100 steps; the selection metric and the model/data type follow --task_type.
CUSTOM = "custom"
CUSTOM_HPARAMS = Hparams("chosen: your own data, the small GLUE tasks' values", "", 16, "3e-5",
                         10, 5, 5, 100)
# Environment variables of the custom scripts: (variable, run.py flag, required, meaning).
CUSTOM_ENV = (
    ("TRAIN_FILE", "--train_file", True, "training data: .csv, .tsv, .json/.jsonl"),
    ("VALIDATION_FILE", "--validation_file", True, "dev data, same columns"),
    ("TEST_FILE", "--test_file", False, "test data (adds --do_test --do_infer)"),
    ("TEXT_COLUMNS", "--text_columns", False, "text column(s), e.g. sentence or q1,q2"),
    ("LABEL_COLUMN", "--label_column", False, "label column"),
    ("TASK_TYPE", "--task_type", False, "classification (default), regression or tagging"),
)
SCRIPT_TASKS = (*TASKS, CUSTOM)

MODES = ("finetuning", "sparsification", "distillation", "maxidisc", "minidisc")
RUN_MODE = {
    "finetuning": "finetune",
    "sparsification": "sparsify",
    "distillation": "distill",
    "maxidisc": "maxidisc",
    "minidisc": "minidisc",
}

# Positional arguments per mode: (shell variable, run.py flag, default, NAME, meaning).
# A default of None means required; "" means optional (an empty model is left to run.py).
POSITIONALS = {
    "finetuning": (
        ("model", "--teacher_model_path", "", "MODEL",
         "checkpoint to start from (default: run.py's, the shipped MiniLM)"),
        ("suffix", "--model_suffix", "", "SUFFIX", "tag for the run folder name"),
    ),
    "sparsification": (
        ("teacher", "--teacher_model_path", None, "TEACHER", "the finetuned checkpoint"),
    ),
    "distillation": (
        ("teacher", "--teacher_model_path", None, "TEACHER",
         "finetuned checkpoint (sparsified for NS students)"),
        ("spec", "--layer_or_sparsity", "90S", "LAYER_OR_SPARSITY",
         "student: NL (bottom N layers), NS (sparsity N) or a checkpoint path"),
        ("suffix", "--model_suffix", "", "SUFFIX", "tag for the run folder name"),
    ),
    "maxidisc": (
        ("teacher", "--teacher_model_path", None, "TEACHER",
         "finetuned checkpoint (sparsified for ...S paths)"),
        ("path", "--layer_or_sparsity_path", "80,90S", "PATH",
         "teacher assistants then student, e.g. 6,4L or 80,90S"),
        ("suffix", "--model_suffix", "", "SUFFIX", "tag for the run folder name"),
    ),
    "minidisc": (
        ("teacher", "--teacher_model_path", None, "TEACHER",
         "sparsified (prunable) finetuned checkpoint"),
        ("target", "--target_sparsity", "90", "TARGET_SPARSITY", "sparsity of the student"),
        ("lam", "--lam", "0.2", "LAMBDA", "lambda of the lambda-tradeoff"),
        ("suffix", "--model_suffix", "", "SUFFIX", "tag for the run folder name"),
    ),
}

PURPOSE = {
    "finetuning": "Finetune a teacher on {task} (the start of every pipeline).",
    "sparsification": "Sparsify a finetuned {task} teacher: rank heads/neurons on dev, reorder "
    "them\n# and store the sparsity map, which makes the teacher prunable.",
    "distillation": "Distill a finetuned {task} teacher into one student (layer-dropped or "
    "sparsified).",
    "maxidisc": "MaxiDisc on {task}: distill along a fixed teacher-assistant path (one trial per "
    "path).",
    "minidisc": "MiniDisc on {task}: pick the teacher assistant by the lambda-tradeoff and "
    "train the\n# student in one trial.",
}


def _usage(mode: str) -> str:
    parts = []
    for _var, _flag, default, name, _meaning in POSITIONALS[mode]:
        if default is None:
            parts.append(name)
        elif default:
            parts.append(f"[{name}={default}]")
        else:
            parts.append(f"[{name}]")
    return " ".join(parts + ["[flags...]"])


def _flags(mode: str, task: str, hp: Hparams) -> list[tuple[str, str | None]]:
    """The fixed part of the run.py command line, in the reference scripts' order (a custom
    task leaves model type, data type and selection metric to run.py: --task_type decides)."""
    kind = "ner" if hp.ner else "cls"
    custom = task == CUSTOM
    flags: list[tuple[str, str | None]] = [
        ("--mode", RUN_MODE[mode]),
        *([] if custom else [("--model_type", f"sparsebert_{kind}")]),
        ("--task_name", task),
        *([] if custom else [("--data_type", f"bert_{kind}")]),
        ("--max_length", str(hp.max_length)),
    ]
    if mode == "sparsification":  # importance on the dev set only: no training flags
        keep = ("--per_device_eval_batch_size", "--seed")
        return flags + [(f, v) for f, v in COMMON if f in keep]
    epochs = hp.finetune_epochs if mode == "finetuning" else hp.epochs
    flags += [
        *([] if custom else [("--selection_metric", hp.selection_metric)]),
        ("--per_device_train_batch_size", str(hp.batch_size)),
        ("--learning_rate", hp.learning_rate),
        ("--num_train_epochs", str(epochs)),
        ("--num_patience_epochs", str(hp.patience)),
        ("--log_interval", str(hp.log_interval)),
        *COMMON,
    ]
    if mode == "minidisc":  # the reference defaults, spelled out so they are easy to change
        flags += [("--target_iteration", "2"), ("--trunc_sparsity", "50")]
    # GLUE test labels are hidden: write the submission file; CoNLL's test set is labelled.
    # A custom task tests only when TEST_FILE is set.
    flags += [("--do_train", None)]
    if not custom:
        flags += [("--do_test" if hp.ner else "--do_infer", None)]
    return flags


def _custom_lines(mode: str) -> list[str]:
    """Bash that turns the CUSTOM_ENV variables into run.py flags (usage and exit 2 when a
    required one is unset)."""
    lines = []
    for var, flag, required, _meaning in CUSTOM_ENV:
        if required:
            lines.append(f'if [[ -z "${{{var}:-}}" ]]; then echo "$usage (set {var})" >&2; '
                         "exit 2; fi")
            lines.append(f'args+=({flag} "${var}")')
        else:
            extra = " --do_test --do_infer" if var == "TEST_FILE" and mode != "sparsification" \
                else ""
            lines.append(f'if [[ -n "${{{var}:-}}" ]]; then args+=({flag} "${var}"{extra}); fi')
    return lines


def render(mode: str, task: str) -> str:
    """The text of bert_scripts/run_<mode>_<task>.sh."""
    hp = CUSTOM_HPARAMS if task == CUSTOM else TASKS[task]
    positionals = POSITIONALS[mode]
    name = f"run_{mode}_{task}.sh"
    source = hp.source
    reference = hp.source.startswith("reference")
    if mode == "finetuning" and reference and hp.finetune_source != hp.source:
        source += f"; --num_train_epochs {hp.finetune_source}"
    width = max(len(p[3]) for p in positionals)
    env = "".join(f"{var}=... " for var, _f, required, _m in CUSTOM_ENV
                  if required and task == CUSTOM)
    lines = [
        "#!/usr/bin/env bash",
        f"# {PURPOSE[mode].format(task=task)}",
        "#",
        f"# Usage: bert_scripts/{name} {_usage(mode)}",
        *(f"#   {p[3]:<{width}}  {p[4]}" for p in positionals),
        "# flags... (from the first argument beginning with '-') go to run.py unchanged, e.g.",
        "# --use_cpu; a flag given again overrides the one set here, e.g. --model_type kdbert_cls.",
        *(["# Your data, from environment variables ('*' = required):",
           *(f"#   {var + '*' * required:<16} {flag} {meaning}"
             for var, flag, required, meaning in CUSTOM_ENV)] if task == CUSTOM else []),
        "# DATA_DIR / OUTPUT_DIR, if set, become --data_dir / --output_dir (default: datasets/",
        "# and outputs/ of the repository). Relative paths, here and in flags, are taken from",
        "# the directory the script is called from.",
        "#",
        f"# Hyper-parameters: {source}.",
        "# Generated by bert_scripts/generate.py: edit its table, then rerun it.",
        "set -euo pipefail",
        'root="$(cd "$(dirname "$0")/.." && pwd)"',
        "",
        f'usage="usage: {env}$0 {_usage(mode)}"',
        'if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then echo "$usage"; exit 0; fi',
        "pos=()",
        f'while [[ $# -gt 0 && ${{#pos[@]}} -lt {len(positionals)} && "$1" != -* ]]; do',
        '  pos+=("$1")',
        "  shift",
        "done",
    ]
    for i, (var, _flag, default, _name, _meaning) in enumerate(positionals):
        lines.append(f'{var}="${{pos[{i}]:-{default or ""}}}"')
        if default is None:
            lines.append(f'if [[ -z "${var}" ]]; then echo "$usage" >&2; exit 2; fi')
    lines += ["", "args=("]
    for flag, value in _flags(mode, task, hp):
        lines.append(f"  {flag}" if value is None else f"  {flag} {value}")
    lines.append(")")
    for var, flag, default, _name, _meaning in positionals:
        if default == "" and flag != "--model_suffix":
            lines.append(f'if [[ -n "${var}" ]]; then args+=({flag} "${var}"); fi')
        else:
            lines.append(f'args+=({flag} "${var}")')
    if task == CUSTOM:
        lines += _custom_lines(mode)
    lines += [
        'args+=(--data_dir "${DATA_DIR:-$root/datasets}")',
        'args+=(--output_dir "${OUTPUT_DIR:-$root/outputs}")',
        "",
        'exec python "$root/run.py" "${args[@]}" "$@"',
        "",
    ]
    return "\n".join(lines)


def generate(out: Path) -> list[Path]:
    """Write every script into `out` (executable); remove run_*.sh the table no longer makes."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for mode in MODES:
        for task in SCRIPT_TASKS:
            path = out / f"run_{mode}_{task}.sh"
            path.write_text(render(mode, task), encoding="utf-8", newline="\n")
            os.chmod(path, 0o755)
            written.append(path)
    for stale in sorted(set(out.glob("run_*.sh")) - set(written)):
        stale.unlink()
        print(f"removed {stale}")
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                   help="folder to write the scripts into (default: bert_scripts/)")
    written = generate(p.parse_args().out)
    print(f"wrote {len(written)} scripts")


if __name__ == "__main__":
    main()
