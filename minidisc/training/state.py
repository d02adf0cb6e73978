"""What a run needs to continue after a kill: random-number states, an atomically written state
file, and a signal guard that turns Ctrl-C / SIGTERM into "save, then stop".

A plain `torch.save` of one dict is enough here (we do not otherwise use HF Accelerate, and
its `save_state` would not know the mode's own progress: MiniDisc's iteration, per-sparsity
bests, the kept TA). Everything in it loads with `weights_only=True`.
"""

from __future__ import annotations

import random
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minidisc.errors import MiniDiscError
from minidisc.files import atomic_write

STATE_DIR = "state"
STATE_FILE = "trainer.pt"


class NumericalError(MiniDiscError):
    """A non-finite loss or score: continuing would only train on garbage. Exit code 3; the
    run's folder and its last good checkpoint are kept."""

    code = 3
    keeps_state = True


class Interrupted(MiniDiscError):
    """Ctrl-C or SIGTERM during training: the state was saved; `--resume` continues."""

    def __init__(self, signum: int, resumable: bool):
        how = ("run the same command with --resume to continue" if resumable
               else "no state was saved yet (nothing to resume)")
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {how}")
        self.code = 128 + signum

    keeps_state = True


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": list(random.getstate()[1]), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), None))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_path(folder: Path) -> Path:
    return folder / STATE_DIR / STATE_FILE


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Written atomically: a kill while writing leaves the previous state intact."""
    path = state_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_state(folder: Path) -> dict[str, Any] | None:
    path = state_path(folder)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a state we cannot read is a user-facing problem, not a crash
        raise MiniDiscError(f"{path}: cannot read the saved state ({type(e).__name__}); "
                            "start the run again without --resume") from None


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between optimiser steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def interrupted(self, resumable: bool) -> Interrupted:
        return Interrupted(self.signum or signal.SIGINT, resumable)


@contextmanager
def stop_on_signals():
    """Within the block, Ctrl-C and SIGTERM ask the loop to save and stop instead of killing
    it mid-write. Only the main thread can install handlers; elsewhere nothing changes."""
    flag = StopFlag()

    def handler(signum, _frame):
        flag.signum = signum

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
