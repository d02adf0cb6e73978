"""The typed configuration: runs as files (--config, --print_config, replay from results.json),
bad config files, and a command line that answers without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FAST_FLAGS, ROOT, write_sst2_task
from safetensors.torch import load_file

from minidisc import registry
from minidisc.cli import parse_args
from minidisc.config import CONTROL_FLAGS, FLAGS, OUTPUT_FLAGS, RunConfig
from minidisc.main import execute, main


def test_flags_round_trip_through_the_typed_parts():
    cfg = parse_args(["--mode", "minidisc", "--task_name", "GLUE/MRPC", "--teacher_model_path",
                      "t", "--lam", "0.5", "--sandwich_k", "2", "--use_cpu"])
    assert (cfg.minidisc.lam, cfg.minidisc.sandwich_size, cfg.runtime.use_cpu) == (0.5, 2, True)
    assert (cfg.data.task_name, cfg.data.fetch_glue) == ("mrpc", True)
    flags = cfg.to_flags()
    assert list(flags) == list(FLAGS) and flags["task_name"] == "glue/mrpc"
    again = RunConfig.from_flags(flags).resolve()
    assert again == cfg  # a recorded configuration resolves to itself
    assert "output_dir" in OUTPUT_FLAGS and "resume" in CONTROL_FLAGS
    assert "lam" in cfg.compute_flags() and "output_dir" not in cfg.compute_flags()


def test_registry_tables_are_what_models_and_losses_use():
    from minidisc.compression.losses import OBJECTIVES
    from minidisc.models.families import FAMILIES, MODEL_TYPES

    assert set(OBJECTIVES) == set(registry.OBJECTIVES)
    assert MODEL_TYPES == registry.MODEL_TYPES
    for f in FAMILIES:
        assert f.config_class.model_type in registry.FAMILY_CONFIG_TYPES[f.name]
        assert f.objectives == registry.FAMILY_OBJECTIVES[f.name]


def test_metrics_declare_what_they_report():
    from minidisc import metrics

    two = ([0, 1], [1, 1])
    for fn, args in ((metrics.acc, two), (metrics.acc_and_f1, two), (metrics.mcc, two),
                     (metrics.acc_and_macro_f1, two),
                     (metrics.pearson_and_spearman, ([0.0, 1.0], [0.0, 2.0])),
                     (metrics.ner_f1, ([["B-PER"]], [["B-PER"]]))):
        assert tuple(fn(*args)) == fn.names


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_and_command_line_override(tmp_path, capsys):
    cfg = _write(tmp_path / "run.yaml", "mode: finetune\ntask_name: sst2\nlearning_rate: 1e-4\n"
                                        "num_train_epochs: 2\nuse_cpu: true\n")
    assert main(["--config", str(cfg), "--num_train_epochs", "3", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["learning_rate"] == 1e-4 and printed["num_train_epochs"] == 3
    assert printed["use_cpu"] is True and printed["selection_metric"] == "acc"
    assert main(["--config", str(cfg), "--print_config", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_train_epochs"] == 2
    # the printed configuration is itself a config file of the same run
    again = _write(tmp_path / "again.yaml", yaml.safe_dump(printed))
    assert parse_args(["--config", str(again)]) == parse_args(
        ["--config", str(cfg), "--num_train_epochs", "3"])


def test_required_flags_still_required_without_a_file(capsys):
    assert main(["--task_name", "sst2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the following arguments are required: --mode")


@pytest.mark.parametrize("text, name, message", [
    ("mode: finetune\ntask_name: sst2\nlearnig_rate: 1\n", "c.yaml", "unknown key 'learnig_rate'"),
    ("mode: finetune\ntask_name: sst2\nnum_train_epochs: many\n", "c.yaml",
     "key 'num_train_epochs': expected a number, got \"many\""),
    ("mode: finetune\ntask_name: sst2\nuse_cpu: 1\n", "c.yaml",
     "key 'use_cpu': expected true or false, got 1"),
    ("mode: finetune\ntask_name: sst2\nlog_interval: [1]\n", "c.yaml",
     "key 'log_interval': expected a whole number"),
    ("mode: fine\ntask_name: sst2\n", "c.yaml", "key 'mode': 'fine' is not one of"),
    ("mode: finetune\n  task_name: [sst2\n", "c.yaml", ":2: not valid YAML"),
    ('{"mode": "finetune",\n "task_name": }', "c.json", ":2: not valid JSON"),
    ("- mode\n- finetune\n", "c.yaml", "maps flag names to values"),
])
def test_a_bad_config_file_is_one_error_line_naming_file_and_key(tmp_path, capsys, text, name,
                                                                 message):
    path = _write(tmp_path / name, text)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}") and message in err, err


def test_a_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --config {tmp_path / 'nope.yaml'}: cannot read it"), err


def test_replay_a_run_from_its_results_json(tiny_bert, tmp_path):
    """`run.py --config RUN/results.json` runs the same run again: the same metrics and the
    same checkpoint tensors (a flag given on the command line still wins: the output folder)."""
    data = write_sst2_task(tmp_path / "data", n_train=32, n_dev=16)
    first = execute(["--mode", "finetune", "--task_name", "sst2", "--data_dir", str(data),
                     "--output_dir", str(tmp_path / "a"), "--teacher_model_path",
                     str(tiny_bert), "--num_train_epochs", "1", *FAST_FLAGS,
                     "--log_interval", "1"])
    run = tmp_path / "a" / "sparsebert_cls_finetune_sst2"
    again = execute(["--config", str(run / "results.json"), "--output_dir",
                     str(tmp_path / "b")])
    rerun = tmp_path / "b" / "sparsebert_cls_finetune_sst2"
    assert again["args"] == {**first["args"], "output_dir": str(tmp_path / "b")}
    assert again["final"]["dev"] == first["final"]["dev"]
    assert again["train"]["history"] == first["train"]["history"]
    assert len(first["train"]["history"]) > 1
    a, b = (load_file(r / "model" / "model.safetensors") for r in (run, rerun))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_run_dir_names_the_folder_a_run_writes(tiny_bert, tmp_path, capsys):
    """`python -m minidisc.run_dir FLAGS` (what shell scripts chain runs with) prints the
    folder run.py writes for the same flags, one of each mode's naming rules."""
    from minidisc.run_dir import main as run_dir

    data = write_sst2_task(tmp_path / "data", n_train=32, n_dev=16)
    flags = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(tmp_path),
             "--teacher_model_path", str(tiny_bert), *FAST_FLAGS]
    res = execute(["--mode", "finetune", *flags, "--num_train_epochs", "1",
                   "--model_suffix", "x"])
    assert run_dir(["--mode", "finetune", *flags, "--model_suffix", "x"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert (printed / "results.json").is_file() and res["args"]["model_suffix"] == "x"
    for mode, spec, name in (("distill", ["--layer_or_sparsity", "4L"], "distill_4L"),
                             ("maxidisc", ["--layer_or_sparsity_path", "80,90S"],
                              "maxidisc_80-90S"),
                             ("minidisc", ["--lam", "0.5"], "minidisc_90S_lam0.5"),
                             ("minidisc", ["--selection_split", "0.25"],
                              "minidisc_90S_lam0.2_sel0.25")):
        assert run_dir(["--mode", mode, *flags, *spec]) == 0
        assert capsys.readouterr().out.strip() == str(tmp_path / f"sparsebert_cls_{name}_sst2")


def _modules_after(*args: str) -> tuple[int, set[str]]:
    code = ("import sys, runpy; sys.argv = ['run.py', *sys.argv[1:]]\n"
            "try:\n    runpy.run_path('run.py', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print(code); print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    return int(lines[-2]), set(lines[-1].split())


@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["--mode", "finetune", "--task_name", "sst2", "--print_config"], 0),
    (["--mode", "finetune", "--task_name", "sst2", "--learning_rate", "fast"], 2),
    (["--mode", "distill", "--task_name", "sst2", "--teacher_model_path", "t"], 2),
])
def test_the_command_line_answers_without_torch(args, code):
    exit_code, modules = _modules_after(*args)
    assert exit_code == code
    assert not modules & {"torch", "transformers", "sklearn", "scipy"}
