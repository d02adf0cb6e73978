"""--resume's check of the saved flags against the flags now, across versions of the tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from minidisc.cli import parse_args
from minidisc.errors import MiniDiscError
from minidisc.training.state import check_config, run_config


def _now(*flags: str) -> dict:
    cfg = parse_args(["--mode", "finetune", "--task_name", "sst2", *flags])
    return run_config(cfg.compute_flags())


def test_same_flags_resume_and_a_changed_one_is_named():
    check_config(_now(), _now(), Path("run"))
    with pytest.raises(MiniDiscError, match=r"--learning_rate 1e-05 then, 0.001 now"):
        check_config(_now(), _now("--learning_rate", "1e-3"), Path("run"))


def test_a_state_from_another_version():
    """A flag added since was at its default then: a resume keeping the default continues, one
    that changes it is refused; a key that is no flag any more is not compared."""
    old = {k: v for k, v in _now().items() if k != "tradeoff"}
    old["fetch_glue"] = False  # recorded by a version whose namespace held it
    check_config(old, _now(), Path("run"))
    with pytest.raises(MiniDiscError, match=r"--tradeoff 'metric' then, 'likelihood' now"):
        check_config(old, _now("--tradeoff", "likelihood"), Path("run"))
