"""Every benchmark script imports and answers --help: a benchmark that dies at import (as
benchmarks.latency once did after a refactor) fails here, not in front of a user."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest
from conftest import ROOT

MODULES = sorted(m.name for m in pkgutil.iter_modules([str(ROOT / "benchmarks")]))


def test_every_benchmark_is_listed():
    assert {"int8", "latency", "memory"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_imports_and_helps(name):
    """`python -m benchmarks.NAME --help` from the checkout (benchmarks/ is not installed)."""
    run = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:") and "--help" in run.stdout
