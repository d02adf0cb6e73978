"""Run folders and checkpoints that are never half-written and never overwrite earlier runs.

A run writes into a hidden staging folder beside its run folder and renames it into place
when it succeeds; an earlier run folder of the same name is moved aside, not deleted.
Checkpoints inside a run are saved to a temporary folder and swapped in by rename.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from minidisc.errors import MiniDiscError

logger = logging.getLogger(__name__)

RESULTS = "results.json"


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder stands for its final checkpoint, so users can pass either."""
    p = Path(path)
    results = p / RESULTS
    if not (p / "config.json").is_file() and results.is_file():
        final = json.loads(results.read_text()).get("final", {}).get("path")
        if final:
            return p / final
    return p


def save_checkpoint(model: nn.Module, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """Write a from_pretrained-loadable folder, replacing an older one only once complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunFolder:
    """Context manager: yields the staging folder, publishes it as `final` on success."""

    def __init__(self, final: Path, is_main: bool = True):
        self.final = final
        self.is_main = is_main
        self.staging = final.with_name(f".{final.name}.staging-{os.getpid()}")

    def __enter__(self) -> Path:
        if self.is_main:
            try:
                self.staging.mkdir(parents=True, exist_ok=False)
            except OSError as e:
                raise MiniDiscError(
                    f"--output_dir {self.final.parent}: cannot write ({e.strerror})") from None
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.is_main:
            return
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        if self.final.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            backup = self.final.with_name(f"{self.final.name}.prev-{stamp}")
            os.replace(self.final, backup)
            logger.info("an earlier run was kept as %s", backup)
        os.replace(self.staging, self.final)
