"""Curves while a run trains: `--report_to tensorboard` (or `wandb`).

The loop reports per optimiser step (`train/loss`, `train/lr`, `train/grad_norm`, and what
the train step adds through `Backward.log`: the sandwich's `train/loss/<s>S` per candidate)
and per evaluation (`eval/score`, `eval/time_s`, the mode's dev metrics); a run reports its
resolved configuration, MiniDisc's choice per iteration and the final metrics.

Only the main process reports (the others get the silent `Reporter`). TensorBoard files go
to `<run folder>/tensorboard/`: one subfolder per training stage (`minidisc_iteration_1`,
...), so TensorBoard shows the stages as runs on the same charts, and the run's own records
(configuration, choices, final metrics) at its top.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from minidisc.errors import MiniDiscError
from minidisc.registry import REPORTERS

CHOICES = REPORTERS  # --report_to
FOLDER = "tensorboard"


def check(report_to: str) -> None:
    """Before any output: the package `--report_to` needs is installed."""
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        raise MiniDiscError(f"--report_to {report_to}: the {report_to} package is not "
                            f"installed; install the extra: pip install 'minidisc[{report_to}]' "
                            f"(or pip install {report_to})")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a nested dict, keyed by their path (`dev/acc`); the rest dropped."""
    out: dict[str, float] = {}
    for key, value in values.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{tag}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            out[tag] = float(value)
    return out


class Reporter:
    """Reports nothing (`--report_to none`, and every process but the main one); the base of
    the real ones. `log` collects a step's values, `step` writes them with the step's own."""

    def __init__(self) -> None:
        self._pending: dict[str, list[float]] = {}

    def stage(self, name: str) -> Reporter:
        """The reporter of one training stage (its steps count from 0)."""
        return self

    def log(self, tag: str, value: float) -> None:
        self._pending.setdefault(tag, []).append(value)

    def step(self, step: int, values: Mapping[str, float]) -> None:
        """One optimiser step: `values` and the mean of what `log` collected since the last."""
        pending = {t: sum(v) / len(v) for t, v in self._pending.items()}
        self._pending.clear()
        self.scalars({**values, **pending}, step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int = 0) -> None:
        pass

    def run_config(self, config: Mapping[str, Any]) -> None:
        self.text("config", "\n".join(
            f"    {line}" for line in json.dumps(dict(config), indent=1, default=str,
                                                 sort_keys=True).splitlines()))

    def final(self, results: Mapping[str, Any]) -> None:
        self.scalars(flatten(results, "final/"), 0)

    def close(self) -> None:
        pass


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


class TensorBoard(Reporter):
    """`torch.utils.tensorboard` event files under `root`, one folder per stage."""

    def __init__(self, root: Path, _writers: dict | None = None, name: str = ""):
        super().__init__()
        self.root, self.name = root, name
        self._writers = {} if _writers is None else _writers

    def stage(self, name: str) -> Reporter:
        return TensorBoard(self.root, self._writers, _slug(name))

    def _writer(self):
        if self.name not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[self.name] = SummaryWriter(str(self.root / self.name))
        return self._writers[self.name]

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        writer = self._writer()
        for tag, value in values.items():
            if math.isfinite(value):
                writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._writer().add_text(tag, text, step)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class Wandb(Reporter):
    """One wandb run (offline with WANDB_MODE=offline); each stage's tags under its name, with
    its own step metric, since wandb's step must only grow."""

    def __init__(self, folder: Path, _run: Any = None, name: str = ""):
        super().__init__()
        self.folder, self.name = folder, name
        if _run is None:
            import wandb

            _run = wandb.init(dir=str(folder), name=folder.name.lstrip("."))
        self._run = _run

    def stage(self, name: str) -> Reporter:
        name = _slug(name)
        self._run.define_metric(f"{name}/*", step_metric=f"{name}/step")
        return Wandb(self.folder, self._run, name)

    def _tag(self, tag: str) -> str:
        return f"{self.name}/{tag}" if self.name else tag

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        row = {self._tag(t): v for t, v in values.items() if math.isfinite(v)}
        if self.name:
            row[self._tag("step")] = step
        self._run.log(row)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._run.summary[self._tag(tag)] = text

    def run_config(self, config: Mapping[str, Any]) -> None:
        self._run.config.update(dict(config), allow_val_change=True)

    def final(self, results: Mapping[str, Any]) -> None:
        self._run.summary.update(flatten(results, "final/"))

    def close(self) -> None:
        if self.name == "":
            self._run.finish()


@contextlib.contextmanager
def open_reporter(report_to: str, folder: Path, is_main: bool) -> Iterator[Reporter]:
    """The run's reporter (writing into the run's staging `folder`), closed at the end."""
    if not is_main or report_to == "none":
        reporter: Reporter = Reporter()
    elif report_to == "tensorboard":
        reporter = TensorBoard(folder / FOLDER)
    else:
        reporter = Wandb(folder)
    try:
        yield reporter
    finally:
        reporter.close()
