"""What a teacher checkpoint must hold before a run starts, read from its files (no tensor
is loaded): a trained task head, a sparsity map where a sparsity is asked of it, the training
data's labels. Each refusal names the step to run first."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from minidisc.data.tasks import Task
from minidisc.errors import MiniDiscError
from minidisc.models import read_config, untrained_head


def check_teacher(path: Path, task: Task, model_type: str, *, needs_head: bool,
                  needs_map: bool, task_flags: str, flag: str = "--teacher_model_path") -> None:
    """A teacher that teaches (`needs_head`: not ftbert_*, which only starts from its
    weights) must have a trained task head; one asked for a sparsity (`needs_map`) a sparsity
    map; one for a custom task the training data's labels. `task_flags` name the run's task
    in the commands the errors suggest. A different label count is load_model's check."""
    where = shlex.quote(str(path))
    untrained = untrained_head(model_type, path, flag) if needs_head else []
    if untrained:
        raise MiniDiscError(
            f"{flag} {path}: its task head is not trained: finetune it first: "
            f"python run.py --mode finetune {task_flags} --teacher_model_path {where}, "
            f"then pass the run folder it writes (its weights have no {untrained[0]}: a plain "
            "pretrained model?)")
    config = read_config(path, flag)
    if needs_map and not config.get("sparsity_map"):
        raise MiniDiscError(
            f"{flag} {path}: not prunable (its config has no sparsity_map): run --mode sparsify "
            f"first: python run.py --mode sparsify {task_flags} --teacher_model_path "
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
