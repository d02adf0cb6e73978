"""Modes: each builds teacher, student(s) and schedule, and hands them to the shared loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minidisc.modes import distill, finetune, maxidisc, minidisc, sparsify

MODES: dict[str, Callable[..., dict[str, Any]]] = {
    "finetune": finetune.run,
    "sparsify": sparsify.run,
    "distill": distill.run,
    "maxidisc": maxidisc.run,
    "minidisc": minidisc.run,
}
