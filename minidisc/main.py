"""Parse and check flags, prepare data and models, run the mode in a staging folder."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from minidisc.commands import configure_logging
from minidisc.errors import exit_code

if TYPE_CHECKING:
    from minidisc.config import RunConfig

logger = logging.getLogger("minidisc")


def execute(argv: Sequence[str] | None = None, *, logs: bool = False) -> dict:
    """Run one mode; raise MiniDiscError on bad input. Returns the results record (with
    --print_config: the resolved flags, printed; nothing runs). `logs`: set up logging
    first (run.py; a caller such as a test keeps its own)."""
    from minidisc.cli import parse
    from minidisc.config import dump_flags

    cfg, print_format = parse(argv)
    if print_format is not None:
        flags = cfg.to_flags()
        sys.stdout.write(dump_flags(flags, print_format))
        return flags
    if logs:
        configure_logging()
    return run(cfg, argv)


def run(cfg: RunConfig, argv: Sequence[str] | None = None) -> dict:
    """Run one resolved configuration in its run folder, inside the signal handlers (a
    signal before the run folder exists, while data and models are read, stops it at once
    with nothing written); returns the results record (`argv`: the command line, for the
    model card)."""
    from minidisc.training.state import stop_on_signals

    with stop_on_signals() as stop:
        return _run(cfg, stop, argv)


def _run(cfg: RunConfig, stop, argv: Sequence[str] | None) -> dict:
    from minidisc import card
    from minidisc.files import write_json
    from minidisc.modes import MODES
    from minidisc.modes.common import prepare
    from minidisc.registry import RESULTS
    from minidisc.training import reporting
    from minidisc.training.outputs import RunFolder, provenance
    from minidisc.training.state import load_state, run_config

    ctx = prepare(cfg)
    cfg = ctx.cfg
    with RunFolder(ctx.run_dir, ctx.rt.is_main, cfg.resume, cfg.keep_previous,
                   run_config(cfg.compute_flags())) as folder, \
            reporting.open_reporter(cfg.report_to, folder, ctx.rt.is_main) as reporter:
        ctx.resumable.folder = stop.folder = folder
        ctx.stop, ctx.reporter = stop, reporter
        reporter.run_config(cfg.to_flags())
        if cfg.resume:
            ctx.evaluator.time_s = ctx.resumable.restore(load_state(folder))
        if ctx.rt.is_main:
            ctx.explain()
        results = MODES[cfg.mode](ctx, folder)
        wall = ctx.resumable.wall()
        ev = ctx.evaluator
        results = {"mode": cfg.mode, "task": cfg.data.task_name,
                   "selection_metric": cfg.training.selection_metric,
                   "selection": ctx.selection_record(), **results,
                   "wall_time_s": wall, "eval_time_s": ev.time_s,
                   "eval_share": ev.time_s / wall if wall > 0 else 0.0,
                   "provenance": provenance(ctx.started_at, ctx.models),
                   "args": cfg.to_flags()}
        reporter.final(results["final"])
        if ctx.rt.is_main:
            write_json(folder / RESULTS, results)
            card.write(folder, results, ctx.run_dir.name, argv)
    if ctx.rt.is_main:
        logger.info("results in %s", ctx.run_dir / RESULTS)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return exit_code(lambda: execute(argv, logs=True))
