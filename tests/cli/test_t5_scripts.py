"""The generated t5_scripts/*.sh: in sync with t5_scripts/generate.py, valid bash, EncT5 types,
and every command line they build is one run.py accepts (run with test_scripts' stand-in
`python`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from minidisc import cli

SCRIPTS = ROOT / "t5_scripts"


def _load_generate():
    spec = importlib.util.spec_from_file_location("t5_scripts_generate", SCRIPTS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generate_reproduces_committed_scripts(tmp_path):
    gen = _load_generate()
    written = gen.gen.generate(tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in SCRIPTS.glob("run_*.sh")), \
        "run `python t5_scripts/generate.py` and commit the scripts"
    assert len(names) == 10  # 5 modes x (mrpc, qqp)
    for name in names:
        assert (SCRIPTS / name).read_text() == (tmp_path / name).read_text(), \
            f"{name} differs: rerun `python t5_scripts/generate.py`"


def test_scripts_name_enct5_types_only():
    for path in SCRIPTS.glob("run_*.sh"):
        text = path.read_text()
        kind = "ftenct5_cls" if "finetuning" in path.name else "sparseenct5_cls"
        assert f"--model_type {kind}\n" in text and "--data_type enct5_cls\n" in text
        assert "bert" not in text.replace("bert_scripts (the reference", "")


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("run_*.sh")))
def test_every_command_line_is_accepted_by_run_py(name, fake_python, tmp_path):
    out = tmp_path / "argv.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "OUTPUT_DIR")}
    env.update(ARGV_OUT=str(out), PATH=f"{fake_python}{os.pathsep}{env['PATH']}")
    proc = subprocess.run(["bash", str(SCRIPTS / name), "some/t5"], env=env, check=False,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(out.read_text())
    assert argv[0] == str(ROOT / "run.py")
    ns = cli.parse_args(argv[1:]).model
    kind = "ftenct5_cls" if "finetuning" in name else "sparseenct5_cls"
    assert (ns.model_type, ns.teacher_model_path) == (kind, "some/t5")
    assert cli.parse_args(argv[1:]).data.data_type == "enct5_cls"
