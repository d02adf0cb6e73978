"""The seam between the compression code and the model families it prunes.

A family is one `Family` entry: its config class, its narrowable base model, its task models,
the config.json `model_type`s it loads and the objectives it offers. The compression code
(sparsify, distill, maxidisc, minidisc) only calls the `NarrowableBase` methods of a task
model's `base_model` (HF's `base_model_prefix`) and the task model's `sparsify`/`densify`/
`reorder`, so adding a family is adding a module with those classes and one entry below.

Model types are `<objective><family>_<cls|ner>`: the family picks the classes (and must match
the checkpoint's config.json), the objective prefix picks the loss (`sparse`, `kd`, `pkd`,
`ft`; compression/losses.py), as in the reference's `sparsebert_cls`, `kdbert_cls`, ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from minidisc import registry
from minidisc.errors import MiniDiscError
from minidisc.models.sparse_bert import (
    MiniDiscBertConfig,
    SparseBertForSequenceClassification,
    SparseBertForTokenClassification,
    SparseBertModel,
)
from minidisc.models.sparse_roberta import (
    MiniDiscRobertaConfig,
    SparseRobertaForSequenceClassification,
    SparseRobertaForTokenClassification,
    SparseRobertaModel,
)
from minidisc.models.sparse_t5 import (
    MiniDiscT5Config,
    SparseEncT5ForSequenceClassification,
    SparseEncT5ForTokenClassification,
    SparseT5EncoderModel,
)

_HEADS = {"SequenceClassification": "cls", "TokenClassification": "ner"}


def head_kind(architectures: Sequence[str] | None) -> str | None:
    """The task head a checkpoint has, from its config.json `architectures`: "cls" or "ner"
    (registry.KINDS); None for a model without one (pretrained, or a base model)."""
    return next((kind for a in architectures or () for suffix, kind in _HEADS.items()
                 if a.endswith(suffix)), None)



class NarrowableBase(Protocol):
    """What every family's base model provides to the compression code."""

    def widths(self) -> tuple[list[int], list[int]]:
        """Heads and FFN neurons per layer that forward uses now (virtual narrowing included)."""

    def physical_widths(self) -> tuple[list[int], list[int]]:
        """Heads and FFN neurons per layer that the weights hold."""

    def encoder_params(self, heads: Sequence[int], neurons: Sequence[int]) -> int:
        """Parameters of the narrowable layers at these widths."""

    def sparsify(self, sparsity: float | None) -> None:
        """Narrow virtually to a map sparsity (None: back to the physical widths)."""

    def densify(self) -> None:
        """Make the virtual narrowing physical (smaller tensors, recorded in the config)."""

    def reorder(self, head_importance: Sequence[torch.Tensor],
                neuron_importance: Sequence[torch.Tensor]) -> None:
        """Sort heads and neurons of every layer by importance, most important first (exact)."""

    def keep_layers(self, n: int) -> None:
        """Keep only the bottom `n` layers (config included)."""


@dataclass(frozen=True)
class Family:
    """One prunable model family."""

    name: str  # model types are <objective><name>_<kind>
    label: str  # for messages
    config_class: type[PretrainedConfig]
    base_class: type[PreTrainedModel]
    task_classes: Mapping[str, type[PreTrainedModel]]  # kind -> task model
    config_types: tuple[str, ...]  # config.json model_type values this family loads
    objectives: tuple[str, ...]  # model-type prefixes offered: sparse, ft, kd, pkd
    token_type_ids: bool  # whether the model (and its tokenizer) takes token_type_ids
    positions_after_padding: bool = False  # position ids start at pad_token_id + 1 (RoBERTa)
    data_type: str = "bert"  # the reference's --data_type prefix for this family

    def model_type(self, objective: str, kind: str) -> str:
        return f"{objective}{self.name}_{kind}"


BERT = Family(
    name="bert", label="BERT", config_class=MiniDiscBertConfig, base_class=SparseBertModel,
    task_classes={"cls": SparseBertForSequenceClassification,
                  "ner": SparseBertForTokenClassification},
    config_types=registry.FAMILY_CONFIG_TYPES["bert"],
    objectives=registry.FAMILY_OBJECTIVES["bert"], token_type_ids=True)
ROBERTA = Family(
    name="roberta", label="RoBERTa", config_class=MiniDiscRobertaConfig,
    base_class=SparseRobertaModel,
    task_classes={"cls": SparseRobertaForSequenceClassification,
                  "ner": SparseRobertaForTokenClassification},
    config_types=registry.FAMILY_CONFIG_TYPES["roberta"],
    objectives=registry.FAMILY_OBJECTIVES["roberta"], token_type_ids=False,
    positions_after_padding=True)

ENCT5 = Family(
    name="enct5", label="T5", config_class=MiniDiscT5Config, base_class=SparseT5EncoderModel,
    task_classes={"cls": SparseEncT5ForSequenceClassification,
                  "ner": SparseEncT5ForTokenClassification},
    config_types=registry.FAMILY_CONFIG_TYPES["enct5"],
    objectives=registry.FAMILY_OBJECTIVES["enct5"], token_type_ids=False,
    data_type=registry.FAMILY_DATA_TYPES["enct5"])

FAMILIES: tuple[Family, ...] = (BERT, ROBERTA, ENCT5)  # in registry.FAMILY_OBJECTIVES' order
_BY_NAME = {f.name: f for f in FAMILIES}
MODEL_TYPES = registry.MODEL_TYPES


def parse_model_type(model_type: str) -> tuple[Family, str, str]:
    """(family, objective, kind) of a model type such as `sparseroberta_cls`."""
    if model_type not in registry.MODEL_TYPE_PARTS:
        raise MiniDiscError(f"--model_type {model_type!r}: unknown; choose one of "
                            f"{', '.join(MODEL_TYPES)}")
    family, objective, kind = registry.MODEL_TYPE_PARTS[model_type]
    return _BY_NAME[family], objective, kind


def family_of_config(config_type: str) -> Family | None:
    """The family that loads a config.json `model_type` (None: no family does)."""
    name = registry.family_of_config_type(config_type)
    return None if name is None else _BY_NAME[name]


def accepted() -> str:
    """The families, for messages: 'BERT, RoBERTa or T5'."""
    labels = [f.label for f in FAMILIES]
    return " or ".join([", ".join(labels[:-1]), labels[-1]] if len(labels) > 1 else labels)


def peek_family(path: str | Path | None) -> Family:
    """The family of a checkpoint or run folder (registry.peek_family), as a Family."""
    return _BY_NAME[registry.peek_family(path)]


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameters the model uses now: narrowable encoder layers and total (virtual narrowing
    counted), for a task model of any family; a plain transformers model counts as it is."""
    total = sum(p.numel() for p in model.parameters())
    base = getattr(model, "base_model", model)
    if not hasattr(base, "encoder_params"):
        encoder = sum(p.numel() for p in base.encoder.parameters())
        return {"encoder": encoder, "total": total}
    physical = base.encoder_params(*base.physical_widths())
    encoder = base.encoder_params(*base.widths())
    return {"encoder": encoder, "total": total - physical + encoder}
