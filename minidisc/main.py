"""Parse and check flags, prepare data and models, run the mode in a staging folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from minidisc.commands import configure_logging
from minidisc.errors import MiniDiscError, exit_code

logger = logging.getLogger("minidisc")


def execute(argv: Sequence[str] | None = None) -> dict:
    """Run one mode; raise MiniDiscError on bad input. Returns the results record."""
    from minidisc.cli import parse_args
    from minidisc.modes import MODES
    from minidisc.training.state import stop_on_signals

    args = parse_args(argv)
    if args.mode not in MODES:
        raise MiniDiscError(f"--mode {args.mode} is not implemented yet")
    with stop_on_signals() as stop:
        return _run(args, MODES[args.mode], stop, argv)


def _run(args, mode, stop, argv: Sequence[str] | None) -> dict:
    """The run inside the signal handlers: a signal before the run folder exists (while
    data and models are read) stops it at once, with nothing written."""
    from minidisc import card
    from minidisc.files import write_json
    from minidisc.modes.common import prepare
    from minidisc.training import reporting
    from minidisc.training.outputs import RESULTS, RunFolder, provenance
    from minidisc.training.state import load_state, run_config

    ctx = prepare(args)
    with RunFolder(ctx.run_dir, ctx.rt.is_main, args.resume, args.keep_previous,
                   run_config(args)) as folder, \
            reporting.open_reporter(args.report_to, folder, ctx.rt.is_main) as reporter:
        ctx.folder = stop.folder = folder
        ctx.stop, ctx.reporter = stop, reporter
        reporter.run_config(vars(args))
        if args.resume:
            ctx.restore(load_state(folder))
        if ctx.rt.is_main:
            ctx.explain()
        results = mode(ctx, folder)
        wall = ctx.wall()
        results = {"mode": args.mode, "task": args.task_name,
                   "selection_metric": args.selection_metric,
                   "selection": ctx.selection_record(), **results,
                   "wall_time_s": wall, "eval_time_s": ctx.eval_time_s,
                   "eval_share": ctx.eval_time_s / wall if wall > 0 else 0.0,
                   "provenance": provenance(ctx.started_at, ctx.models), "args": vars(args)}
        reporter.final(results["final"])
        if ctx.rt.is_main:
            write_json(folder / RESULTS, results)
            card.write(folder, results, ctx.run_dir.name, argv)
    if ctx.rt.is_main:
        logger.info("results in %s", ctx.run_dir / RESULTS)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return exit_code(lambda: execute(argv))
