"""The generated bert_scripts/*.sh: in sync with generate.py, and every command line (each script
run under bash) is one run.py accepts.

The scripts are executed for real with a stand-in `python` first on PATH that records its
argv, so the tests check the exact command line bash assembles (defaults, positionals,
environment overrides, pass-through flags) without running any model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT

from minidisc import cli
from minidisc.data.tasks import TASKS

SCRIPTS = ROOT / "bert_scripts"


def _load_generate():
    spec = importlib.util.spec_from_file_location("bert_scripts_generate", SCRIPTS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = _load_generate()
ALL = sorted(f"run_{mode}_{task}.sh" for mode in gen.MODES for task in gen.SCRIPT_TASKS)
TEACHER = "outputs/some_teacher"
# What a custom script needs in its environment (files need not exist: run.py's parse only).
CUSTOM_ENV = {"TRAIN_FILE": "my/train.csv", "VALIDATION_FILE": "my/dev.csv",
              "TEXT_COLUMNS": "review", "LABEL_COLUMN": "stars"}


@pytest.fixture
def run(fake_python, tmp_path):
    """run(name, args, **env) -> (completed process, run.py argv or None if it never ran)."""
    out = tmp_path / "argv.json"

    def _run(name: str, args: list[str], cwd: Path | None = None, **env: str):
        out.unlink(missing_ok=True)
        ours = ("DATA_DIR", "OUTPUT_DIR", *(var for var, *_ in gen.CUSTOM_ENV))
        environ = {k: v for k, v in os.environ.items() if k not in ours}
        if name.endswith(f"_{gen.CUSTOM}.sh"):
            environ.update(CUSTOM_ENV)
        environ.update(env, ARGV_OUT=str(out), PATH=f"{fake_python}{os.pathsep}{environ['PATH']}")
        proc = subprocess.run(["bash", str(SCRIPTS / name), *args], env=environ, check=False,
                              capture_output=True, text=True, timeout=30, cwd=cwd)
        return proc, (json.loads(out.read_text()) if out.exists() else None)

    return _run


def parse(argv: list[str]):
    """run.py's own parser and validation (no file I/O) on what the script would run."""
    assert argv[0] == str(ROOT / "run.py")
    return SimpleNamespace(**cli.parse_args(argv[1:]).to_flags())


@pytest.fixture
def ns_of(run):
    """ns_of(name, *args) -> run.py's parsed flags for a successful script call."""

    def _ns_of(name: str, *args: str):
        proc, argv = run(name, list(args))
        assert proc.returncode == 0, proc.stderr
        return parse(argv)

    return _ns_of


def test_generate_reproduces_committed_scripts(tmp_path):
    gen.generate(tmp_path)
    fresh = sorted(p.name for p in tmp_path.glob("run_*.sh"))
    committed = sorted(p.name for p in SCRIPTS.glob("run_*.sh"))
    assert fresh == ALL
    assert committed == ALL, "run `python bert_scripts/generate.py` and commit the scripts"
    for name in ALL:
        assert (SCRIPTS / name).read_text() == (tmp_path / name).read_text(), (
            f"{name} differs from generate.py's output: rerun `python bert_scripts/generate.py`"
        )
        assert os.access(SCRIPTS / name, os.X_OK), f"{name} is not executable"


def test_table_covers_exactly_the_registered_tasks():
    assert set(gen.TASKS) == set(TASKS)
    assert gen.CUSTOM not in TASKS and set(gen.SCRIPT_TASKS) == {*TASKS, gen.CUSTOM}
    for name, hp in gen.TASKS.items():
        assert hp.ner == TASKS[name].is_ner
        assert hp.selection_metric == TASKS[name].selection_metric


# Positionals for each mode: minimal call, then a full one.
CALLS = {
    "finetuning": ([], ["some/bert", "sfx"]),
    "sparsification": ([TEACHER], [TEACHER]),
    "distillation": ([TEACHER], [TEACHER, "4L", "sfx"]),
    "maxidisc": ([TEACHER], [TEACHER, "6,4L", "sfx"]),
    "minidisc": ([TEACHER], [TEACHER, "80", "0.3", "sfx"]),
}


@pytest.mark.parametrize("name", ALL)
def test_every_command_line_is_accepted_by_run_py(name, ns_of):
    mode, task = name.removeprefix("run_").removesuffix(".sh").split("_", 1)
    custom = task == gen.CUSTOM
    hp = gen.CUSTOM_HPARAMS if custom else gen.TASKS[task]
    for positionals in CALLS[mode]:
        ns = ns_of(name, *positionals)
        assert ns.mode == gen.RUN_MODE[mode] and ns.task_name == task
        assert ns.model_type == ("sparsebert_ner" if hp.ner else "sparsebert_cls")
        assert ns.max_length == hp.max_length and ns.seed == 776
        if custom:
            assert (ns.train_file, ns.validation_file, ns.text_columns, ns.label_column) == (
                "my/train.csv", "my/dev.csv", "review", "stars")
        if mode == "sparsification":
            assert not (ns.do_train or ns.do_test or ns.do_infer)
            assert ns.teacher_model_path == TEACHER
            continue
        assert ns.selection_metric == ("acc" if custom else TASKS[task].selection_metric)
        assert ns.per_device_train_batch_size == hp.batch_size
        assert ns.learning_rate == float(hp.learning_rate)
        assert ns.log_interval == hp.log_interval and ns.max_grad_norm == 5.0
        epochs = hp.finetune_epochs if mode == "finetuning" else hp.epochs
        assert ns.num_train_epochs == epochs and ns.num_patience_epochs == hp.patience
        # GLUE test labels are hidden (write the submission file); CoNLL's are not; a custom
        # task tests only with TEST_FILE.
        assert ns.do_train and (ns.do_test, ns.do_infer) == (
            (False, False) if custom else (hp.ner, not hp.ner))


def test_positional_defaults_and_values(ns_of):
    ns = ns_of("run_finetuning_mrpc.sh")
    assert ns.teacher_model_path is None and ns.model_suffix == ""  # run.py's shipped MiniLM
    ns = ns_of("run_finetuning_mrpc.sh", "m", "x")
    assert (ns.teacher_model_path, ns.model_suffix) == ("m", "x")

    assert ns_of("run_distillation_mrpc.sh", TEACHER).layer_or_sparsity == "90S"
    ns = ns_of("run_distillation_mrpc.sh", TEACHER, "4L", "x")
    assert (ns.layer_or_sparsity, ns.model_suffix) == ("4L", "x")

    assert ns_of("run_maxidisc_mrpc.sh", TEACHER).layer_or_sparsity_path == "80,90S"
    ns = ns_of("run_maxidisc_mrpc.sh", TEACHER, "6,4L", "x")
    assert (ns.layer_or_sparsity_path, ns.model_suffix) == ("6,4L", "x")

    ns = ns_of("run_minidisc_mrpc.sh", TEACHER)
    assert (ns.target_sparsity, ns.lam, ns.target_iteration) == (90, 0.2, 2)
    ns = ns_of("run_minidisc_mrpc.sh", TEACHER, "80", "0.5", "x")
    assert (ns.target_sparsity, ns.lam, ns.model_suffix) == (80, 0.5, "x")
    ns = ns_of("run_minidisc_mrpc.sh", TEACHER, "", "0.5")  # empty keeps the default
    assert (ns.target_sparsity, ns.lam) == (90, 0.5)


def test_extra_flags_and_environment_reach_run_py(run, ns_of):
    # Flags may follow the required positionals directly; a repeated flag wins in argparse.
    proc, argv = run("run_distillation_conll.sh",
                     [TEACHER, "--use_cpu", "--model_type", "kdbert_ner"],
                     DATA_DIR="/d", OUTPUT_DIR="/o")
    assert proc.returncode == 0, proc.stderr
    ns = parse(argv)
    assert ns.use_cpu and ns.model_type == "kdbert_ner" and ns.layer_or_sparsity == "90S"
    assert (ns.data_dir, ns.output_dir) == ("/d", "/o")

    ns = ns_of("run_minidisc_sst2.sh", TEACHER, "85", "--seed", "1")
    assert (ns.target_sparsity, ns.lam, ns.seed) == (85, 0.2, 1)
    assert (ns.data_dir, ns.output_dir) == (str(ROOT / "datasets"), str(ROOT / "outputs"))


def test_relative_paths_are_the_callers(run, tmp_path):
    """The scripts do not cd: run.py runs where the caller is, so DATA_DIR, OUTPUT_DIR, files
    and pass-through flags mean what they mean in the caller's shell."""
    (tmp_path / "here").mkdir()
    proc, argv = run("run_finetuning_custom.sh", ["--student_model_path", "ck"],
                     cwd=tmp_path / "here", DATA_DIR="data", OUTPUT_DIR="../runs",
                     TEST_FILE="my/test.jsonl", TASK_TYPE="regression")
    assert proc.returncode == 0, proc.stderr
    ns = parse(argv)
    assert (ns.data_dir, ns.output_dir, ns.student_model_path) == ("data", "../runs", "ck")
    assert (ns.test_file, ns.task_type, ns.do_test, ns.do_infer) == (
        "my/test.jsonl", "regression", True, True)
    assert ns.selection_metric == "corr"
    assert Path(f"{tmp_path / 'argv.json'}.cwd").read_text() == str(tmp_path / "here")


@pytest.mark.parametrize("unset", ["TRAIN_FILE", "VALIDATION_FILE"])
def test_custom_script_without_its_files_prints_usage(run, unset):
    proc, argv = run("run_finetuning_custom.sh", [], **{unset: ""})
    assert proc.returncode == 2 and argv is None
    assert proc.stderr.startswith("usage: ") and f"(set {unset})" in proc.stderr


@pytest.mark.parametrize("mode", ["sparsification", "distillation", "maxidisc", "minidisc"])
def test_missing_teacher_prints_usage_and_exits_2(mode, run):
    for args in ([], ["--use_cpu"]):
        proc, argv = run(f"run_{mode}_mrpc.sh", args)
        assert proc.returncode == 2
        assert proc.stderr.startswith("usage: ") and "TEACHER" in proc.stderr
        assert argv is None  # run.py never started


def test_help_prints_usage(run):
    proc, argv = run("run_sparsification_mrpc.sh", ["--help"])
    assert proc.returncode == 0 and proc.stdout.startswith("usage: ") and argv is None
