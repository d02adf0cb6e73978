"""The generated t5_scripts/*.sh: in sync with t5_scripts/generate.py, valid bash, EncT5 types."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def test_scripts_are_bash_with_enct5_types():
    for path in SCRIPTS.glob("run_*.sh"):
        subprocess.run(["bash", "-n", str(path)], check=True)
        text = path.read_text()
        kind = "ftenct5_cls" if "finetuning" in path.name else "sparseenct5_cls"
        assert f"--model_type {kind}\n" in text and "--data_type enct5_cls\n" in text
        assert "bert" not in text.replace("bert_scripts (the reference", "")
