"""Parse and check flags, prepare data and models, run the mode in a staging folder."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from minidisc.errors import exit_code

if TYPE_CHECKING:
    from minidisc.config import RunConfig

logger = logging.getLogger("minidisc")


def configure_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", level=logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


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
    """Run one resolved configuration in its run folder; returns the results record (`argv`:
    the command line, for the model card)."""
    from minidisc import card
    from minidisc.files import write_json
    from minidisc.modes import MODES
    from minidisc.modes.common import prepare
    from minidisc.registry import RESULTS
    from minidisc.training import reporting
    from minidisc.training.outputs import RunFolder, provenance
    from minidisc.training.state import load_state, stop_on_signals

    ctx = prepare(cfg)
    cfg = ctx.cfg
    with RunFolder(ctx.run_dir, ctx.rt.is_main, cfg.resume) as folder, \
            stop_on_signals() as stop, \
            reporting.open_reporter(cfg.report_to, folder, ctx.rt.is_main) as reporter:
        ctx.folder, ctx.stop, ctx.reporter = folder, stop, reporter
        reporter.run_config(cfg.to_flags())
        if cfg.resume:
            ctx.restore(load_state(folder))
        if ctx.rt.is_main:
            ctx.explain()
        results = MODES[cfg.mode](ctx, folder)
        wall = ctx.wall()
        results = {"mode": cfg.mode, "task": cfg.data.task_name,
                   "selection_metric": cfg.training.selection_metric, **results,
                   "wall_time_s": wall, "eval_time_s": ctx.evaluator.time_s,
                   "eval_share": ctx.evaluator.time_s / wall if wall > 0 else 0.0,
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
