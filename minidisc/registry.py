"""The names the command line offers, as plain tables: modes, model families and their
objectives, data types, precisions. One home per fact, free of torch, so `run.py --help`,
`--print_config` and flag errors answer without importing a model; `models/` and
`compression/` build their classes and losses from these same tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from minidisc.errors import MiniDiscError

MODES = ("finetune", "sparsify", "distill", "maxidisc", "minidisc")
KINDS = ("cls", "ner")  # sequence classification/regression, token classification

# Model types are <objective><family>_<kind>; each family offers these objectives.
FAMILY_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "bert": ("sparse", "ft", "kd", "pkd"),
    "roberta": ("sparse", "ft"),
    "enct5": ("sparse", "ft"),
}
# config.json model_type values each family loads (its own MiniDisc config type last)
FAMILY_CONFIG_TYPES: dict[str, tuple[str, ...]] = {
    "bert": ("bert", "minidisc_bert"),
    "roberta": ("roberta", "minidisc_roberta"),
    "enct5": ("t5", "mt5", "minidisc_t5"),
}
# the reference's --data_type prefix of each family (RoBERTa reads BERT's pipeline)
FAMILY_DATA_TYPES: dict[str, str] = {"bert": "bert", "roberta": "bert", "enct5": "enct5"}
DEFAULT_FAMILY = "bert"  # the shipped MiniLM's

# model type -> (family, objective, kind), e.g. sparseroberta_cls -> ("roberta", "sparse", "cls")
MODEL_TYPE_PARTS: dict[str, tuple[str, str, str]] = {
    f"{o}{f}_{k}": (f, o, k) for f, objectives in FAMILY_OBJECTIVES.items()
    for o in objectives for k in KINDS}
MODEL_TYPES: tuple[str, ...] = tuple(MODEL_TYPE_PARTS)
# distillation losses (compression/losses.py); sparse_kd is selectable with --objective only
OBJECTIVES = ("sparse", "kd", "pkd", "ft", "sparse_kd")

# The reference's input pipelines, <bert|enct5>_<cls|ner>.
DATA_TYPES = ("bert_cls", "bert_ner", "enct5_cls", "enct5_ner")
STRATEGIES = ("ddp", "fsdp")
TEACHER_DTYPES = ("fp32", "bf16", "fp16")
TRADEOFFS = ("metric", "normalized", "likelihood")  # --tradeoff (compression/schedule.py)
REPORTERS = ("none", "tensorboard", "wandb")  # --report_to (training/reporting.py)
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "constant_with_warmup")

RESULTS = "results.json"  # every run folder's record
DEFAULT_DATA_DIR = "datasets"
MIN_MAX_LENGTH = 8  # [CLS] + [SEP] + a few tokens: shorter inputs cannot hold a sentence pair
DEFAULT_MAX_LENGTH = 128  # --max_length when not given (capped at the model's position table)


def family_of_config_type(config_type: str) -> str | None:
    """The family that loads a config.json `model_type` (None: no family does)."""
    return next((f for f, types in FAMILY_CONFIG_TYPES.items() if config_type in types), None)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder stands for its final checkpoint, so users can pass either."""
    p = Path(path)
    results = p / RESULTS
    if not (p / "config.json").is_file() and results.is_file():
        try:
            final = json.loads(results.read_text(encoding="utf-8"))["final"]["path"]
        except (OSError, ValueError, LookupError, TypeError):
            raise MiniDiscError(f"{results}: not a readable results.json (no final.path to "
                                "the run's checkpoint)") from None
        if not isinstance(final, str) or not final:
            raise MiniDiscError(f"{results}: malformed results.json (final.path)")
        return p / final
    return p


def peek_family(path: str | Path | None) -> str:
    """The family of a checkpoint or run folder (its config.json alone), for a default model
    type; BERT (the default model's) when it cannot be told: loading the checkpoint reports
    what is wrong with it."""
    if path is None:
        return DEFAULT_FAMILY
    try:
        config = json.loads((resolve_checkpoint(path) / "config.json").read_text("utf-8"))
        return family_of_config_type(str(config.get("model_type", "bert"))) or DEFAULT_FAMILY
    except (MiniDiscError, OSError, ValueError, AttributeError):
        return DEFAULT_FAMILY
