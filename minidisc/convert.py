"""Convert a checkpoint of the original MiniDisc code (GeneZC/MiniDisc) into this project's format.

    python -m minidisc.convert REF_DIR OUT_DIR [--task_name T]

Lets users keep finetuned, sparsified or distilled (densified) models they trained with the
reference code. The converted folder computes the same logits as the reference did and loads
with `--teacher_model_path` / `--student_model_path`.

What changes (read from the reference's code):
- heads: `cls.0` (dense + tanh on [CLS]) becomes `bert.pooler.dense`, `cls.3` / `cls.1` (NER)
  become `classifier`; the reference's own `bert.pooler` is never used by it and is dropped;
- config: `sparsity` "70" -> 70.0; the map {"70": {"head": {"<layer>": n}, "neuron": {...}}}
  (sparse dicts of removed counts) -> {"70": {"heads": [...], "neurons": [...]}} (lists), with
  the reference's rounding of each removed width to a multiple of 8 applied, because that is
  what its layers actually dropped;
- densified widths, which the reference re-derives from `sparsity` + map when loading, become
  explicit `layer_heads` / `layer_neurons`, checked against the weight shapes;
- label order: the reference orders MNLI, QNLI and RTE labels differently, so with
  --task_name the classifier rows are permuted to this project's order.

One difference remains: narrowing to a map entry that empties a layer's heads or neurons keeps
that sublayer's output bias here, while the reference skips it (a densified checkpoint's empty
sublayers are exact: their unused bias is zeroed).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    PreTrainedModel,
)

from minidisc.commands import ArgumentParser, configure_logging
from minidisc.compression.sparsity_map import SparsityMap, sparsity_key, truncate_map
from minidisc.data.pipeline import load_tokenizer
from minidisc.data.tasks import TASKS, Task
from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import atomic_write
from minidisc.models.sparse_bert import (
    SparseBertForSequenceClassification,
    SparseBertForTokenClassification,
)

logger = logging.getLogger("minidisc.convert")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# The reference's label index order where it differs from this project's (its data/readers.py);
# every other task uses the same order in both.
REFERENCE_LABELS = {
    "mnli": ("contradiction", "neutral", "entailment"),
    "qnli": ("not_entailment", "entailment"),
    "rte": ("not_entailment", "entailment"),
}

# Head layouts of the reference's task models: reference name -> name here.
HEADS = {
    "cls": {"cls.0.weight": "bert.pooler.dense.weight", "cls.0.bias": "bert.pooler.dense.bias",
            "cls.3.weight": "classifier.weight", "cls.3.bias": "classifier.bias"},
    "ner": {"cls.1.weight": "classifier.weight", "cls.1.bias": "classifier.bias"},
}
_KEEP = re.compile(
    r"bert\.embeddings\.((word|position|token_type)_embeddings\.weight|LayerNorm\.(weight|bias))"
    r"|bert\.encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense"
    r"|attention\.output\.LayerNorm|intermediate\.dense|output\.dense|output\.LayerNorm)"
    r"\.(weight|bias)")
# Saved by the reference but unused by its task models (their heads pool [CLS] themselves).
_DROP = re.compile(r"bert\.embeddings\.position_ids|bert\.pooler\.dense\.(weight|bias)")
_LAYER = re.compile(r"bert\.encoder\.layer\.(\d+)\.")
_REFERENCE_ONLY = ("sparsity", "sparsity_map", "architectures", "num_relation_heads")


def _read_weights(ref: Path) -> dict[str, torch.Tensor]:
    """The state dict, from a single file or the shards an index names."""

    def load(f: Path) -> dict[str, torch.Tensor]:
        try:
            if f.suffix == ".safetensors":
                return load_file(f)
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # corrupt or foreign files raise many different types
            raise MiniDiscError(f"{f}: unreadable weights ({type(e).__name__})") from None

    for name in WEIGHT_FILES:
        if (ref / name).is_file():
            return load(ref / name)
        index = ref / f"{name}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise MiniDiscError(f"{index}: unreadable ({type(e).__name__})") from None
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load(ref / shard))
            return state
    raise MiniDiscError(f"{ref}: no weights ({' or '.join(WEIGHT_FILES)})")


def rename_weights(state: dict[str, torch.Tensor], ref: Path) -> tuple[str, dict]:
    """('cls' or 'ner', the state dict under this project's names); unknown names are errors
    so nothing the reference model used is silently lost."""
    head_keys = {k for k in state if k.startswith("cls.")}
    kind = next((k for k, names in HEADS.items() if head_keys == set(names)), None)
    if kind is None:
        found = ", ".join(sorted(head_keys)) or "none"
        raise MiniDiscError(f"{ref}: no reference task head (want cls.0+cls.3 or cls.1; "
                            f"found {found})")
    unknown = sorted(k for k in state
                     if k not in head_keys and not _KEEP.fullmatch(k) and not _DROP.fullmatch(k))
    if unknown:
        more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise MiniDiscError(f"{ref}: unrecognised weight names: {', '.join(unknown[:3])}{more}")
    out = {HEADS[kind][k]: v for k, v in state.items() if k in head_keys}
    out.update((k, v) for k, v in state.items() if _KEEP.fullmatch(k))
    return kind, out


def _removed_units(count: int, unit: int, total: int) -> int:
    """Units the reference really drops for `count` in its map: it rounds the dropped *width*
    (count x unit size) to a multiple of 8 with Python's round (halves to even)."""
    width = 8 * round(count * unit / 8)
    kept = total * unit - width
    if count < 0 or width % unit or kept < 0 or 0 < kept < 8:
        # kept < 8 but > 0: the reference skips such a sublayer, this project would not
        raise ValueError(f"removing {count} leaves a width of {kept}, which this project "
                         "cannot reproduce")
    return width // unit


def convert_map(ref_map: dict[str, Any], cfg: BertConfig) -> SparsityMap:
    """The reference's per-layer dicts of removed counts as this project's lists."""
    n = cfg.num_hidden_layers
    head_size = cfg.hidden_size // cfg.num_attention_heads
    units = {"head": ("heads", head_size, cfg.num_attention_heads),
             "neuron": ("neurons", 1, cfg.intermediate_size)}
    out: SparsityMap = {}
    for key in sorted(ref_map, key=float):
        entry: dict[str, list[int]] = {}
        for kind, (name, unit, total) in units.items():
            removed = [0] * n
            for layer, count in ref_map[key][kind].items():
                if not 0 <= int(layer) < n:
                    raise ValueError(f"layer {layer} in a {n}-layer model")
                removed[int(layer)] = _removed_units(int(count), unit, total)
            entry[name] = removed
        out[sparsity_key(float(key))] = entry
    return out


def _widths(state: dict[str, torch.Tensor], cfg: BertConfig, ref: Path) -> tuple[list, list]:
    """Heads and neurons each layer physically has, read from the weight shapes."""
    layers = {int(m.group(1)) for k in state if (m := _LAYER.match(k))}
    if layers != set(range(cfg.num_hidden_layers)):
        raise MiniDiscError(f"{ref}: weights hold layers {sorted(layers)}, config.json says "
                            f"num_hidden_layers={cfg.num_hidden_layers}")
    head_size = cfg.hidden_size // cfg.num_attention_heads
    heads, neurons = [], []
    for i in range(cfg.num_hidden_layers):
        try:
            width = state[f"bert.encoder.layer.{i}.attention.self.query.weight"].shape[0]
            neurons.append(state[f"bert.encoder.layer.{i}.intermediate.dense.weight"].shape[0])
        except KeyError as e:
            raise MiniDiscError(f"{ref}: missing weight {e.args[0]}") from None
        if width % head_size:
            raise MiniDiscError(f"{ref}: layer {i} has a query width of {width}, not a "
                                f"multiple of the head size {head_size}")
        heads.append(width // head_size)
    return heads, neurons


def _check_widths(heads: list[int], neurons: list[int], smap: SparsityMap | None,
                  sparsity: float, cfg: BertConfig, ref: Path) -> None:
    """The weights must have the widths the map gives at the model's own sparsity, and every
    higher map entry must only narrow them further."""
    full = ([cfg.num_attention_heads] * len(heads), [cfg.intermediate_size] * len(neurons))
    entries = {"0": full} if smap is None else {
        k: ([cfg.num_attention_heads - r for r in e["heads"]],
            [cfg.intermediate_size - r for r in e["neurons"]]) for k, e in smap.items()}
    if sparsity_key(sparsity) not in entries:
        raise MiniDiscError(f"{ref}: its sparsity {sparsity:g} is not in its sparsity_map")
    for key, (want_h, want_n) in entries.items():
        own = key == sparsity_key(sparsity)
        for what, have, want in (("heads", heads, want_h), ("neurons", neurons, want_n)):
            bad = [i for i, (h, w) in enumerate(zip(have, want)) if (h != w if own else w > h)]
            if bad:
                i = bad[0]
                rel = "" if own else "at most "
                raise MiniDiscError(
                    f"{ref}: layer {i} has {have[i]} {what} in its weights; the sparsity map at "
                    f"{float(key):g} says {rel}{want[i]}")


def _zero_skipped_biases(state: dict[str, torch.Tensor], heads: list[int],
                         neurons: list[int]) -> None:
    """The reference skips an emptied sublayer entirely (output bias included); here an empty
    sublayer still adds its output bias, so a zero bias makes both compute the same."""
    for i, (h, n) in enumerate(zip(heads, neurons)):
        for width, name in ((h, "attention.output"), (n, "output")):
            if width == 0:
                key = f"bert.encoder.layer.{i}.{name}.dense.bias"
                state[key] = torch.zeros_like(state[key])
                logger.info("layer %d: %s is empty; its unused bias was zeroed", i, name)


def _apply_task(state: dict[str, torch.Tensor], cfg: BertConfig, task: Task | None,
                ref: Path) -> None:
    """Label count, names and order of `task` (the classifier rows follow our label order)."""
    rows = state["classifier.weight"].shape[0]
    if task is None:
        cfg.num_labels = rows
        return
    if rows != task.num_labels:
        raise MiniDiscError(f"{ref}: its head has {rows} labels, task {task.name} needs "
                            f"{task.num_labels}")
    order = REFERENCE_LABELS.get(task.name)
    if order is not None:
        perm = torch.tensor([order.index(label) for label in task.labels])
        for k in ("classifier.weight", "classifier.bias"):
            state[k] = state[k][perm]
    cfg.num_labels = task.num_labels
    if not task.is_regression:
        cfg.id2label = dict(enumerate(task.labels))
        cfg.label2id = {label: i for i, label in enumerate(task.labels)}
    cfg.task_name = task.name


def _read_config(ref: Path) -> dict[str, Any]:
    if not ref.is_dir():
        raise MiniDiscError(f"{ref}: checkpoint folder not found")
    f = ref / "config.json"
    if not f.is_file():
        raise MiniDiscError(f"{ref}: not a checkpoint folder (no config.json)")
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MiniDiscError(f"{f}: unreadable ({type(e).__name__})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "bert":
        kind = raw.get("model_type") if isinstance(raw, dict) else None
        raise MiniDiscError(f"{f}: a {kind!r} model, expected a BERT")
    return raw


def build_model(ref: str | Path, task: Task | None = None) -> PreTrainedModel:
    """The reference checkpoint at `ref` as a model of this project (weights checked)."""
    ref = Path(ref)
    raw = _read_config(ref)
    kind, state = rename_weights(_read_weights(ref), ref)
    cfg = BertConfig.from_dict({k: v for k, v in raw.items() if k not in _REFERENCE_ONLY})
    try:
        sparsity = float(raw.get("sparsity", 0))
        smap = convert_map(raw["sparsity_map"], cfg) if raw.get("sparsity_map") else None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise MiniDiscError(f"{ref}: malformed sparsity or sparsity_map in config.json "
                            f"({type(e).__name__}: {e})") from None
    if smap is not None and not any(float(k) > 0 for k in smap):
        smap = None  # only sparsity 0: a finetuned model (the reference adds this stub to all)
    if smap is not None:  # entries below its own sparsity are out of a densified model's reach
        smap = truncate_map(smap, sparsity)
    heads, neurons = _widths(state, cfg, ref)
    _check_widths(heads, neurons, smap, sparsity, cfg, ref)
    if smap is not None:
        cfg.sparsity, cfg.sparsity_map = sparsity, smap
    if sparsity > 0:
        cfg.layer_heads, cfg.layer_neurons = heads, neurons
        _zero_skipped_biases(state, heads, neurons)
    _apply_task(state, cfg, task, ref)
    if smap is None:
        cls = BertForSequenceClassification if kind == "cls" else BertForTokenClassification
    else:
        cls = SparseBertForSequenceClassification if kind == "cls" else \
            SparseBertForTokenClassification
    model = cls(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [s.strip() for s in str(e).splitlines() if s.strip()]
        raise MiniDiscError(f"{ref}: weights do not fit its config.json: "
                            f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    return model.eval()


def convert(ref: str | Path, out: str | Path, task_name: str | None = None) -> Path:
    """Convert `ref` into a new folder `out` (written whole or not at all)."""
    ref, out = Path(ref), Path(out)
    if out.exists():
        raise MiniDiscError(f"{out}: already exists (choose a new output folder)")
    task = TASKS[task_name] if task_name else None
    model = build_model(ref, task)
    tokenizer = load_tokenizer(ref)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(out) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    except OSError as e:
        raise MiniDiscError(f"{out}: cannot write ({e.strerror or e})") from None
    cfg = model.config
    what = ("densified" if getattr(cfg, "layer_heads", None)
            else "sparsified" if getattr(cfg, "sparsity_map", None) else "finetuned")
    if task is None:
        logger.warning("no --task_name: labels stay in the reference's order, which differs "
                       "from this project's for %s", ", ".join(REFERENCE_LABELS))
    logger.info("converted %s (%s %s, sparsity %g) -> %s", ref, what, type(model).__name__,
                float(getattr(cfg, "sparsity", 0)), out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = ArgumentParser(prog="python -m minidisc.convert",
                     description="Convert a checkpoint written by the original MiniDisc code "
                     "(finetuned, sparsified or densified; classification or NER) into this "
                     "project's format.")
    parser.add_argument("ref_dir", metavar="REF_DIR", help="the reference checkpoint folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="new folder to write (must not exist)")
    parser.add_argument("--task_name", choices=sorted(TASKS),
                        help="set label names and reorder the labels where the reference's "
                        "order differs (mnli, qnli, rte); recommended")

    def run() -> None:
        args = parser.parse_args(argv)
        convert(args.ref_dir, args.out_dir, args.task_name)

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
