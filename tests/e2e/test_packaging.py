"""The package as users install it: requirements.txt and pyproject.toml agree, and an installed
`minidisc` runs its CLI and the demo from a folder outside the checkout.

The installed-package tests skip where the package is not installed (a plain checkout);
CI installs it and sets MINIDISC_REQUIRE_INSTALLED=1, which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, make_tiny_bert
from packaging.requirements import Requirement

import minidisc

REQUIRED = os.environ.get("MINIDISC_REQUIRE_INSTALLED") == "1"
SCRIPTS = ("minidisc", "minidisc-predict", "minidisc-export", "minidisc-report",
           "minidisc-convert", "minidisc-demo")


def _requirements() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    reqs = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_requirements_txt_and_pyproject_agree():
    """The checkout's install (requirements.txt) and the package's (pyproject.toml) pin the
    same versions; the checkout also gets every core dependency of the package."""
    project = _pyproject()
    core = {Requirement(r).name.lower().replace("_", "-"): Requirement(r)
            for r in project["dependencies"]}
    extras = {Requirement(r).name.lower().replace("_", "-"): Requirement(r)
              for group in project["optional-dependencies"].values() for r in group}
    reqs = _requirements()
    assert set(core) <= set(reqs), set(core) - set(reqs)
    for name, req in reqs.items():
        declared = core.get(name) or extras.get(name)
        assert declared is not None, f"{name} is in requirements.txt but not in pyproject.toml"
        assert declared.specifier == req.specifier, (name, str(declared), str(req))
    assert {"onnx", "plots", "test", "tensorboard", "slurm"} <= set(
        project["optional-dependencies"])
    assert set(project["scripts"]) == set(SCRIPTS)


def _installed() -> Path:
    """The folder of the installed console scripts; skips (fails in CI) when the package is not
    installed into this interpreter's environment (its scripts are what an install adds)."""
    bindir = Path(sys.executable).parent
    missing = [s for s in SCRIPTS if not (bindir / s).is_file()]
    if len(missing) == len(SCRIPTS):
        if REQUIRED:
            pytest.fail("MINIDISC_REQUIRE_INSTALLED=1 but the minidisc package is not installed")
        pytest.skip("the minidisc package is not installed (pip install .)")
    assert not missing, f"console scripts missing from {bindir}: {missing}"
    return bindir


def _env() -> dict[str, str]:
    """An environment that does not put the checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def test_suite_runs_against_the_installed_package():
    """In CI the code under test is the installed copy, not the checkout's sources."""
    if not REQUIRED:
        pytest.skip("only checked where CI installs the package")
    _installed()
    here = Path(minidisc.__file__).resolve().parent  # CI's venv may sit inside the checkout
    assert here != (ROOT / "minidisc").resolve() and "site-packages" in here.parts, here


def test_cli_help_from_outside_the_checkout(tmp_path):
    bindir = _installed()
    for script, flag in (("minidisc", "--mode"), ("minidisc-export", "--onnx")):
        run = subprocess.run([str(bindir / script), "--help"], cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("usage:") and flag in run.stdout, run.stdout


def test_demo_from_outside_the_checkout(tmp_path):
    """The demo's smallest setting (a tiny teacher, a tenth of an epoch) from an empty folder:
    the demo task is generated on the fly, identical to the checkout's datasets/demo."""
    bindir = _installed()
    teacher = make_tiny_bert(tmp_path / "tiny")
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run([str(bindir / "minidisc-demo"), "--teacher_model_path", str(teacher),
                          "--epochs", "0.05", "--trunc_sparsity", "85", "--latency_repeats", "1",
                          "--use_cpu"],
                         cwd=work, env=_env(), capture_output=True, text=True,
                         timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    out = work / "outputs" / "demo"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_sparsity"] == 90 and 0 <= summary["student_metric"] <= 1
    assert "MiniDisc demo on 'demo'" in run.stdout
    committed = ROOT / "datasets" / "demo"
    if committed.is_dir():
        for split in ("train", "dev", "test"):
            generated = (out / "data" / "demo" / f"{split}.tsv").read_bytes()
            assert generated == (committed / f"{split}.tsv").read_bytes(), split
    shutil.rmtree(out)


def test_demo_task_generation_is_atomic_and_reused(tmp_path):
    from minidisc.data import demo_task

    folder = demo_task.ensure(tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    (folder / "dev.tsv").write_text("sentence\tlabel\nkept\t1\n")  # an existing task is kept
    assert demo_task.ensure(tmp_path / "data") == folder
    assert (folder / "dev.tsv").read_text().endswith("kept\t1\n")
