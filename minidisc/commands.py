"""What every command line of the package shares (run.py, predict, export, convert, demo,
report, download): a parser whose usage errors are ordinary user errors (one `error:` line,
exit code 2, through errors.exit_code), and the logging set-up."""

from __future__ import annotations

import argparse
import logging
import os

from minidisc.errors import MiniDiscError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises MiniDiscError instead of printing its usage and exiting, so a bad
    flag reads like every other bad input (`--help` still prints and exits 0)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MiniDiscError(message)


def configure_logging() -> None:
    """Log lines with time, level and module; transformers' own chatter and bars off."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", level=logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
