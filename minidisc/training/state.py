"""What a run needs to continue after a kill: random-number states, an atomically written state
file, and a signal guard that turns Ctrl-C / SIGTERM into "save, then stop".

A plain `torch.save` of one dict is enough here (we do not otherwise use HF Accelerate, and
its `save_state` would not know the mode's own progress: MiniDisc's iteration, per-sparsity
bests, the kept TA). Everything in it loads with `weights_only=True`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Iterator, Mapping
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
    """Ctrl-C or SIGTERM: exit 128 + the signal (130, 143). A run that saved a state keeps its
    folder (`--resume` continues); one that saved none leaves nothing behind."""

    def __init__(self, signum: int, resumable: bool, how: str | None = None):
        how = how or ("run the same command with --resume to continue" if resumable
                      else "no state was saved yet (nothing to resume)")
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {how}")
        self.code = 128 + signum
        self.keeps_state = resumable


def run_config(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved flags that decide a run's computation (RunConfig.compute_flags), recorded
    with its state so that a --resume can be checked against them (plain values: the state
    loads weights_only), and the number of torchrun processes."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)

    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's
    return {**{k: plain(v) for k, v in sorted(flags.items())}, "processes": processes}


def check_config(saved: dict[str, Any] | None, now: dict[str, Any], where: Path) -> None:
    """A --resume must compute what the interrupted run computed: one line naming each flag
    that differs, with the value then and now. A state saved by another version may lack a
    flag added since (the run had it at its default: now it must be too) or hold one that is
    gone (nothing to compare it with)."""
    from minidisc.config import FLAGS

    if saved is None:  # a state saved before configurations were recorded
        return

    def then(k: str) -> Any:
        return saved[k] if k in saved else FLAGS[k].default if k in FLAGS else None

    keys = sorted(now.keys() | {k for k in saved if k in FLAGS or k == "processes"})
    diff = [f"{'torchrun processes' if k == 'processes' else '--' + k} {then(k)!r} then, "
            f"{now.get(k)!r} now" for k in keys if then(k) != now.get(k)]
    if diff:
        raise MiniDiscError(f"--resume: the interrupted run in {where} was started with other "
                            f"flags: {'; '.join(diff)} (resume with its flags, or start anew "
                            "without --resume)")


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
    with signals_deferred():
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
    """Set by SIGINT/SIGTERM. Outside a deferred block the signal stops the run at once (an
    evaluation, sparsify's importance pass: nothing there to save); inside one (the training
    loop, every write of a checkpoint, state or record) it waits for the block's end, so no
    file is left half-written, and the loop first saves its state at the step's end.
    `folder`: the run's staging folder, whose saved state says whether --resume can go on."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.depth = 0
        self.folder: Path | None = None
        self.raised = False  # the run is stopping already: later signals change nothing

    def __bool__(self) -> bool:
        return self.signum is not None

    def interrupted(self, resumable: bool | None = None) -> Interrupted:
        if resumable is None:
            resumable = self.folder is not None and state_path(self.folder).is_file()
        self.raised = True
        return Interrupted(self.signum or signal.SIGINT, resumable)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.signum is not None and not self.raised:
            raise self.interrupted()


_ACTIVE: list[StopFlag] = []  # the flag of the run in progress (stop_on_signals)


def signals_deferred() -> contextlib.AbstractContextManager[None]:
    """For a write that must not be cut in half: a signal meanwhile takes effect after it."""
    return _ACTIVE[-1].deferred() if _ACTIVE else contextlib.nullcontext()


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Within the block Ctrl-C and SIGTERM raise `Interrupted` (exit 130 / 143), deferred
    where StopFlag says. Only the main thread can install handlers; elsewhere the flag is
    never set."""
    flag = StopFlag()

    def handler(signum, _frame):
        flag.signum = signum
        if flag.depth == 0 and not flag.raised:
            raise flag.interrupted()

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield flag
        return
    _ACTIVE.append(flag)
    try:
        yield flag
    finally:
        _ACTIVE.remove(flag)
        for s, h in old.items():
            signal.signal(s, h)
