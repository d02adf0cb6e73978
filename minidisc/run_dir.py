"""`python -m minidisc.run_dir FLAGS...`: the run folder that `run.py FLAGS...` writes into,
printed (nothing runs, nothing is read but the teacher's config.json), so that shell
scripts chaining runs name folders with the function run.py itself uses
(RunConfig.run_name) instead of rebuilding the name by hand."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from minidisc.errors import exit_code


def run_dir(argv: Sequence[str]) -> Path:
    """The folder run.py would write for these flags: --output_dir / the run's name."""
    from minidisc.cli import parse_args

    return parse_args(argv).run_folder()


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return exit_code(lambda: print(run_dir(args)))


if __name__ == "__main__":
    sys.exit(main())
