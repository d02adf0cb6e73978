"""The command line: every flag comes from the typed configuration (minidisc/config.py),
built once here from the flags and an optional `--config FILE`; the argparse Namespace does not
leave this module.

This module only parses: checks that need no file I/O happen in the configuration, before any
work starts; checks that read files (data folders, checkpoints: models/checks.py) happen in
the mode's setup, still before any output exists. Building the parser imports no torch:
`--help`, `--print_config` and flag errors answer at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from minidisc.commands import ArgumentParser
from minidisc.config import FLAGS, RunConfig, read_config_file
from minidisc.training.reporting import check as check_reporter

PRINT_FORMATS = ("yaml", "json")
GROUP_ORDER = ("models", "data", "training", "hardware", "what to do", "distillation")


def build_parser(defaults: dict | None = None) -> argparse.ArgumentParser:
    """run.py's parser, one option per configuration field; `defaults` (a config file's
    values) replace the fields' defaults, so command-line flags override the file."""
    defaults = defaults or {}
    p = ArgumentParser(
        prog="run.py",
        description="MiniDisc: finetune, sparsify and distill BERT/RoBERTa models with a "
        "teacher-assistant schedule found in one trial.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    groups: dict[str, argparse._ActionsContainer] = {"run": p}
    for name in GROUP_ORDER:
        groups[name] = p.add_argument_group(name)
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="read flags from a YAML or JSON file (flag: value; flags given here "
                   "override it); a run's results.json replays that run")
    g.add_argument("--print_config", nargs="?", const="yaml", choices=PRINT_FORMATS,
                   default=None, help="print the resolved configuration (yaml or json) and "
                   "exit without running")
    for f in FLAGS.values():
        if f.group not in groups:
            groups[f.group] = p.add_argument_group(f.group)
        names = [f"--{f.name}", *f.aliases]
        default = defaults.get(f.name, f.default)
        if f.type is bool:
            groups[f.group].add_argument(*names, action="store_true", default=default,
                                         help=f.help)
            continue
        groups[f.group].add_argument(*names, type=f.type, default=default, help=f.help,
                                     choices=f.choices,
                                     required=f.required and f.name not in defaults)
    return p


def parse(argv: Sequence[str] | None = None) -> tuple[RunConfig, str | None]:
    """The resolved configuration of a command line, and --print_config's format (None:
    run it)."""
    pre = ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    given, _ = pre.parse_known_args(argv)
    from_file = {} if given.config is None else read_config_file(given.config)
    ns = build_parser(from_file).parse_args(argv)
    cfg = RunConfig.from_flags({name: getattr(ns, name) for name in FLAGS}).resolve()
    check_reporter(cfg.report_to)
    return cfg, ns.print_config


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    """The resolved configuration of a command line (`--print_config` ignored)."""
    return parse(argv)[0]
