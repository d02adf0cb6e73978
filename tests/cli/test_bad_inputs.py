"""Bad input, one table: every case ends with exactly one `error: ...` line naming the flag or
the file (and the line, for data files), exit code 2, no traceback and no output folder.

Each case gets fresh task folders (sst2 and conll from conftest) and an output folder that does
not exist yet; checkpoints that are broken on purpose are built once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST_FLAGS, ROOT, write_conll_task, write_sst2_task
from transformers import BertForSequenceClassification

from minidisc.compression.sparsity_map import build_map
from minidisc.main import main

REPO = ROOT

MRPC_HEAD = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
STSB_HEAD = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
             "\tscore")


# --- checkpoints broken on purpose ------------------------------------------------------------


def _copy(src: Path, dst: Path, **config) -> Path:
    shutil.copytree(src, dst)
    if config:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def ckpts(tiny_bert, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("ckpts")
    g = torch.Generator().manual_seed(0)
    smap = build_map([torch.rand(4, generator=g) for _ in range(2)],
                     [torch.rand(64, generator=g) for _ in range(2)])
    bad_json = _copy(tiny_bert, root / "bad_json")
    (bad_json / "config.json").write_text('{"hidden_size": 32,\n  "num_')
    truncated = _copy(tiny_bert, root / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_config = _copy(tiny_bert, root / "no_config")
    (no_config / "config.json").unlink()
    run = root / "run_with_bad_results"
    run.mkdir()
    (run / "results.json").write_text("{not json")
    # a teacher for the modes that need one: a task head (untrained, but its weights exist)
    trained = _copy(tiny_bert, root / "trained")
    BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(trained)
    return SimpleNamespace(
        tiny=tiny_bert, trained=trained,
        # prunable and already at 90% (the map is real, the widths need not be narrowed to load)
        at90=_copy(trained, root / "at90", sparsity=90.0, sparsity_map=smap),
        three_labels=_copy(tiny_bert, root / "three", architectures=[
            "BertForSequenceClassification"], id2label={"0": "a", "1": "b", "2": "c"},
            label2id={"a": 0, "b": 1, "c": 2}),
        gpt2=_copy(tiny_bert, root / "gpt2", model_type="gpt2"),
        bad_json=bad_json, truncated=truncated, no_config=no_config, run=run,
    )


# --- the table --------------------------------------------------------------------------------


@dataclass
class Env:
    tmp: Path
    data: Path
    out: Path
    ck: SimpleNamespace

    def argv(self, mode: str = "finetune", *extra: str, task: str = "sst2",
             teacher: Path | str | None = None) -> list[str]:
        """By default the teacher each mode expects: a plain model to finetune, else one with
        a task head."""
        if teacher is None:
            teacher = self.ck.tiny if mode == "finetune" else self.ck.trained
        return ["--mode", mode, "--task_name", task, "--data_dir", str(self.data),
                "--output_dir", str(self.out), "--teacher_model_path", str(teacher),
                *FAST_FLAGS, "--num_train_epochs", "1", *extra]

    def write(self, rel: str, content: str | bytes) -> Path:
        path = self.data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def fmt(self, fragment: str) -> str:
        return fragment.format(data=self.data, tmp=self.tmp, out=self.out, ck=self.ck)


def _sst2_with(e: Env, split: str, *rows: str) -> None:
    e.write(f"sst2/{split}.tsv", "\n".join(["sentence\tlabel", *rows]) + "\n")


def _conll_line3(e: Env, line: str) -> None:
    path = e.data / "conll" / "train.txt"
    lines = path.read_text().split("\n")
    lines[2] = line
    path.write_text("\n".join(lines))


def _custom(e: Env, train: str, dev: str = "text,label\ngood film,pos\n", ext: str = "csv",
            *flags: str) -> list[str]:
    """A custom task's argv over the two files given (text and label columns by default)."""
    paths = [e.write(f"my/{split}.{ext}", text) for split, text in (("train", train),
                                                                    ("dev", dev))]
    return e.argv("finetune", "--train_file", str(paths[0]), "--validation_file",
                  str(paths[1]), *(flags or ("--text_columns", "text", "--label_column",
                                             "label")), task="custom")


_TRAIN_CSV = "text,label\ngood film,pos\nbad film,neg\n"


def _remove(e: Env, rel: str) -> None:
    p = e.data / rel
    shutil.rmtree(p) if p.is_dir() else p.unlink()


# (id, argv builder that may also break files, fragments the one error line must contain)
CASES = [
    # --- flags (cli.validate / argparse): fail before anything is read ----------------------
    ("unknown mode", lambda e: e.argv("finetune", "--mode", "compress"),
     ["--mode", "invalid choice: 'compress'"]),
    ("missing task flag", lambda e: ["--mode", "finetune"], ["--task_name"]),
    ("unknown task", lambda e: e.argv(task="imdb"), ["--task_name", "'imdb'"]),
    ("unknown model type", lambda e: e.argv("finetune", "--model_type", "gpt_cls"),
     ["--model_type", "'gpt_cls'"]),
    ("model type of another data type", lambda e: e.argv("finetune", "--model_type",
                                                          "sparsebert_ner"), ["--model_type"]),
    ("unknown selection metric", lambda e: e.argv("finetune", "--selection_metric", "f1"),
     ["--selection_metric", "'f1'"]),
    ("layer_or_sparsity not a spec", lambda e: e.argv("distill", "--layer_or_sparsity", "90X"),
     ["--layer_or_sparsity", "'90X'"]),
    ("layer_or_sparsity 0 layers", lambda e: e.argv("distill", "--layer_or_sparsity", "0L"),
     ["--layer_or_sparsity", "'0L'", "at least 1 layer"]),
    ("layer_or_sparsity 120S", lambda e: e.argv("distill", "--layer_or_sparsity", "120S"),
     ["--layer_or_sparsity", "'120S'", "[0, 100)"]),
    ("distill without a student", lambda e: e.argv("distill"), ["--layer_or_sparsity"]),
    ("path without L or S", lambda e: e.argv("maxidisc", "--layer_or_sparsity_path", "6,4"),
     ["--layer_or_sparsity_path", "'6,4'"]),
    ("path with a bad item", lambda e: e.argv("maxidisc", "--layer_or_sparsity_path",
                                              "80,abcS"),
     ["--layer_or_sparsity_path", "bad item 'abcS'"]),
    ("path empty", lambda e: e.argv("maxidisc", "--layer_or_sparsity_path", " , "),
     ["--layer_or_sparsity_path", "empty"]),
    ("path sparsity 100", lambda e: e.argv("maxidisc", "--layer_or_sparsity_path", "80,100S"),
     ["--layer_or_sparsity_path", "'100S'"]),
    ("target_sparsity not a number", lambda e: e.argv("minidisc", "--target_sparsity", "high"),
     ["--target_sparsity", "'high'"]),
    ("target_sparsity 100", lambda e: e.argv("minidisc", "--target_sparsity", "100"),
     ["--target_sparsity 100", "[0, 100)"]),
    ("target_sparsity nan", lambda e: e.argv("minidisc", "--target_sparsity", "nan"),
     ["--target_sparsity nan"]),
    ("lam not a number", lambda e: e.argv("minidisc", "--lam", "0.2.1"),
     ["--lam", "'0.2.1'"]),
    ("lam negative", lambda e: e.argv("minidisc", "--lam", "-0.5"), ["--lam -0.5", "negative"]),
    ("lam infinite", lambda e: e.argv("minidisc", "--lam", "inf"), ["--lam inf", "finite"]),
    ("train batch size 0", lambda e: e.argv("finetune", "--per_device_train_batch_size", "0"),
     ["--per_device_train_batch_size 0"]),
    ("eval batch size -4", lambda e: e.argv("sparsify", "--per_device_eval_batch_size", "-4"),
     ["--per_device_eval_batch_size -4"]),
    ("batch size not a whole number", lambda e: e.argv("finetune",
                                                       "--per_device_train_batch_size", "8.5"),
     ["--per_device_train_batch_size", "'8.5'"]),
    ("epochs 0", lambda e: e.argv("distill", "--layer_or_sparsity", "1L", "--num_train_epochs",
                                  "0"), ["--num_train_epochs 0", "positive"]),
    ("epochs -2", lambda e: e.argv("finetune", "--num_train_epochs", "-2"),
     ["--num_train_epochs -2"]),
    ("learning rate 0", lambda e: e.argv("finetune", "--learning_rate", "0"),
     ["--learning_rate 0", "positive"]),
    ("learning rate negative", lambda e: e.argv("minidisc", "--learning_rate=-1e-5"),
     ["--learning_rate -1e-05"]),
    ("log_interval 0", lambda e: e.argv("finetune", "--log_interval", "0"),
     ["--log_interval 0", "at least 1"]),
    ("log_interval negative", lambda e: e.argv("maxidisc", "--layer_or_sparsity_path", "1L",
                                               "--log_interval", "-10"),
     ["--log_interval -10"]),
    ("max_length below 8", lambda e: e.argv("finetune", "--max_length", "4"),
     ["--max_length 4", "at least 8"]),
    ("seed negative", lambda e: e.argv("finetune", "--seed", "-1"), ["--seed -1"]),
    ("patience nan", lambda e: e.argv("finetune", "--num_patience_epochs", "nan"),
     ["--num_patience_epochs nan"]),
    ("model_suffix with a slash", lambda e: e.argv("finetune", "--model_suffix", "a/b"),
     ["--model_suffix 'a/b'"]),
    ("fp16 and bf16", lambda e: e.argv("finetune", "--use_fp16", "--use_bf16"),
     ["--use_fp16", "--use_bf16"]),
    ("sparsify with kdbert", lambda e: e.argv("sparsify", "--model_type", "kdbert_cls"),
     ["--model_type", "sparsebert"]),
    ("custom flag without --task_name custom", lambda e: e.argv("finetune", "--text_columns",
                                                                 "sentence"),
     ["--text_columns is only for --task_name custom"]),
    ("custom task without its files", lambda e: e.argv(task="Custom"),
     ["--task_name custom needs --train_file and --validation_file"]),
    ("custom task without columns", lambda e: e.argv(
        "finetune", "--train_file", "t.csv", "--validation_file", "d.csv", task="custom"),
     ["--task_name custom (classification) needs --text_columns and --label_column"]),
    ("custom file of unknown type", lambda e: _custom(e, "x", "y", "xlsx"),
     ["--train_file {data}/my/train.xlsx", "unknown file type '.xlsx'"]),
    ("glue/ of a task that is not GLUE", lambda e: e.argv(task="glue/conll"),
     ["--task_name 'glue/conll'", "not a GLUE task"]),
    # --- checkpoints (models.check_checkpoint / load_model) ---------------------------------
    ("missing teacher folder", lambda e: e.argv("distill", "--layer_or_sparsity", "1L",
                                                teacher=e.tmp / "nope"),
     ["--teacher_model_path {tmp}/nope", "not found"]),
    ("teacher folder without config.json", lambda e: e.argv(teacher=e.ck.no_config),
     ["--teacher_model_path {ck.no_config}", "config.json"]),
    ("corrupt config.json", lambda e: e.argv("minidisc", teacher=e.ck.bad_json),
     ["--teacher_model_path {ck.bad_json}/config.json:2:", "JSON"]),
    ("config of another architecture", lambda e: e.argv("sparsify", teacher=e.ck.gpt2),
     ["--teacher_model_path {ck.gpt2}", "'gpt2'"]),
    ("truncated weights", lambda e: e.argv("distill", "--layer_or_sparsity", "1L",
                                           teacher=e.ck.truncated),
     ["--teacher_model_path {ck.truncated}/model.safetensors", "truncated"]),
    ("run folder with a corrupt results.json", lambda e: e.argv(teacher=e.ck.run),
     ["{ck.run}/results.json"]),
    ("missing student folder", lambda e: e.argv("distill", "--student_model_path",
                                                str(e.tmp / "student")),
     ["--student_model_path {tmp}/student", "not found"]),
    ("teacher with 3 labels for a 2-label task", lambda e: e.argv(teacher=e.ck.three_labels),
     ["--teacher_model_path {ck.three_labels}", "3 labels"]),
    ("max_length above max_position_embeddings", lambda e: e.argv("finetune", "--max_length",
                                                                  "65"),
     ["--max_length 65", "max_position_embeddings 64"]),
    ("NS on a teacher that is not prunable", lambda e: e.argv("distill", "--layer_or_sparsity",
                                                              "90S"),
     ["--teacher_model_path {ck.trained}", "not prunable", "run --mode sparsify first"]),
    ("minidisc on a teacher that is not prunable", lambda e: e.argv("minidisc"),
     ["--teacher_model_path {ck.trained}", "not prunable",
      "python run.py --mode sparsify --task_name sst2 --data_dir {data} --teacher_model_path "
      "{ck.trained}"]),
    ("teacher without a trained head", lambda e: e.argv("sparsify", teacher=e.ck.tiny),
     ["--teacher_model_path {ck.tiny}", "its task head is not trained",
      "finetune it first: python run.py --mode finetune --task_name sst2"]),
    ("target not above the teacher's sparsity", lambda e: e.argv("minidisc",
                                                                 teacher=e.ck.at90),
     ["--target_sparsity 90", "not above the teacher's sparsity 90"]),
    # --- data files (data/readers.py, tasks.py): file and line ------------------------------
    ("missing task folder", lambda e: (_remove(e, "sst2"), e.argv())[1],
     ["{data}/sst2", "task folder not found"]),
    ("missing train file", lambda e: (_remove(e, "sst2/train.tsv"), e.argv())[1],
     ["{data}/sst2/train.tsv", "not found"]),
    ("empty train file", lambda e: (e.write("sst2/train.tsv", b""), e.argv())[1],
     ["{data}/sst2/train.tsv", "empty file"]),
    ("empty dev split", lambda e: (_sst2_with(e, "dev"), e.argv("sparsify"))[1],
     ["{data}/sst2/dev.tsv", "no examples"]),
    ("missing test file", lambda e: (_remove(e, "sst2/test.tsv"),
                                     e.argv("finetune", "--do_infer"))[1],
     ["{data}/sst2/test.tsv", "not found"]),
    ("too many columns", lambda e: (_sst2_with(e, "train", "good film\t1", "a\tb\t1"),
                                    e.argv())[1],
     ["{data}/sst2/train.tsv:3:", "expected 2 tab-separated columns (sentence, label), found 3"]),
    ("too few columns (mrpc)", lambda e: (
        e.write("mrpc/train.tsv", f"{MRPC_HEAD}\n1\t1\t2\ta\tb\n1\tonly two\n"),
        e.argv(task="mrpc"))[1],
     ["{data}/mrpc/train.tsv:3:", "expected 5 tab-separated columns (Quality, #1 ID, #2 ID, "
      "#1 String, #2 String), found 2"]),
    ("too few columns without a header (cola)", lambda e: (
        e.write("cola/train.tsv", "gj04\t1\t\tfine .\ngj04\t1\n"), e.argv(task="cola"))[1],
     ["{data}/cola/train.tsv:2:", "expected at least 4 tab-separated columns (source, label, "
      "author's mark, sentence), found 2"]),
    ("header too narrow", lambda e: (e.write("sst2/train.tsv", "sentence\nfine film\n"),
                                     e.argv())[1],
     ["{data}/sst2/train.tsv:1:", "header has 1 column (sentence)"]),
    ("unknown label", lambda e: (_sst2_with(e, "train", "good film\t1", "bad film\t2"),
                                 e.argv())[1],
     ["{data}/sst2/train.tsv:3:", "bad label '2'", "0, 1"]),
    ("non-numeric STS-B score", lambda e: (
        e.write("stsb/train.tsv", f"{STSB_HEAD}\n0\tg\tf\t2012\t0\ts\ts\ta\tb\thigh\n"),
        e.argv(task="stsb"))[1],
     ["{data}/stsb/train.tsv:2:", "bad label 'high'", "a number"]),
    ("CoNLL line with a missing tag", lambda e: (_conll_line3(e, "john"),
                                                 e.argv(task="conll"))[1],
     ["{data}/conll/train.txt:3:", "1 column, expected at least 2 (word ... tag)"]),
    ("CoNLL unknown tag", lambda e: (_conll_line3(e, "john NN B-NP B-PERSON"),
                                     e.argv(task="conll"))[1],
     ["{data}/conll/train.txt:3:", "unknown tag 'B-PERSON'"]),
    ("not UTF-8", lambda e: (e.write("sst2/train.tsv", b"sentence\tlabel\ngood\t1\ncaf\xe9\t0\n"),
                             e.argv())[1],
     ["{data}/sst2/train.tsv:3:", "not UTF-8"]),
    ("not UTF-8 after a BOM", lambda e: (
        e.write("sst2/dev.tsv", b"\xef\xbb\xbfsentence\tlabel\n\xff\t1\n"), e.argv("sparsify"))[1],
     ["{data}/sst2/dev.tsv:2:", "not UTF-8"]),
    # --- a custom task's files (data/readers.py): file and line, the columns found --------
    ("custom: missing column", lambda e: _custom(e, "review,stars\ngood,pos\n"),
     ["{data}/my/train.csv:1: no column 'text' (found: review, stars)"]),
    ("custom: unknown label in dev", lambda e: _custom(
        e, _TRAIN_CSV, "text,label\nfine,pos\nhm,maybe\n"),
     ["{data}/my/dev.csv:3: bad label 'maybe': not in the training data (labels: neg, pos)"]),
    ("custom: ragged CSV row", lambda e: _custom(e, _TRAIN_CSV + "a,b,pos\n"),
     ["{data}/my/train.csv:4: malformed row", "expected 2 comma-separated columns (text, "
      "label), found 3"]),
    ("custom: one label only", lambda e: _custom(e, "text,label\ngood,pos\nfine,pos\n"),
     ["--train_file {data}/my/train.csv", "only one label (pos)"]),
    ("custom: JSON line not an object", lambda e: _custom(
        e, '{"text": "good", "label": "pos"}\n[1, 2]\n', ext="jsonl"),
     ["{data}/my/train.jsonl:2:", "one JSON object per line"]),
    ("custom: JSON field missing", lambda e: _custom(
        e, '{"text": "good", "label": "pos"}\n{"txt": "bad", "label": "neg"}\n', ext="jsonl"),
     ["{data}/my/train.jsonl:2: no field 'text' (found: txt, label)"]),
    ("custom: regression label not a number", lambda e: _custom(
        e, "text,label\ngood,4.5\nbad,low\n", "text,label\nok,3\n", "csv", "--text_columns",
        "text", "--label_column", "label", "--task_type", "regression"),
     ["{data}/my/train.csv:3: bad label 'low': expected a number"]),
    ("custom: tagging words and tags differ", lambda e: _custom(
        e, '{"w": ["john", "ran"], "t": ["B-PER"]}\n', '{"w": ["a"], "t": ["O"]}\n', "jsonl",
        "--text_columns", "w", "--label_column", "t", "--task_type", "tagging"),
     ["{data}/my/train.jsonl:1: 2 words but 1 tag"]),
    # --- the output folder ---------------------------------------------------------------------
    ("output_dir is a file", lambda e: (e.tmp.joinpath("outfile").write_text("x"),
                                        e.argv("finetune", "--output_dir",
                                               str(e.tmp / "outfile")))[1],
     ["--output_dir {tmp}/outfile", "cannot write"]),
]


@pytest.fixture
def env(tmp_path, ckpts) -> Env:
    data = write_sst2_task(tmp_path / "data")
    write_conll_task(data)
    return Env(tmp=tmp_path, data=data, out=tmp_path / "out", ck=ckpts)


def test_the_matrix_is_big_and_covers_every_mode(tmp_path, ckpts):
    from minidisc.registry import MODES

    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)
    used = set()
    for i, (_, build, _) in enumerate(CASES):
        root = tmp_path / str(i)
        data = write_sst2_task(root / "data")
        write_conll_task(data)
        argv = build(Env(tmp=root, data=data, out=root / "out", ck=ckpts))
        used.add(argv[len(argv) - 1 - argv[::-1].index("--mode") + 1])  # the last --mode
    assert set(MODES) <= used


@pytest.mark.parametrize("name, build, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input(env, capsys, name, build, fragments):
    argv = build(env)
    before = sorted(os.listdir(env.tmp))
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in cap.err + cap.out, cap.err
    for fragment in fragments:
        assert env.fmt(fragment) in line, line
    # no output folder, nothing new beside the data (a failed run leaves no trace)
    assert not env.out.exists(), list(env.out.iterdir())
    assert sorted(os.listdir(env.tmp)) == before


def test_late_failure_leaves_an_existing_output_folder_as_it_was(env, capsys):
    """A check that needs the teacher's weights fails inside the run: its staging folder and
    lock go, the earlier run beside it stays."""
    env.out.mkdir()
    earlier = env.out / "sparsebert_cls_minidisc_90S_lam0.2_sst2"
    earlier.mkdir()
    (earlier / "results.json").write_text("{}")
    assert main(env.argv("minidisc", teacher=env.ck.at90)) == 2
    assert "not above the teacher's sparsity" in capsys.readouterr().err
    assert [p.name for p in env.out.iterdir()] == [earlier.name]
    assert (earlier / "results.json").read_text() == "{}"


def test_late_failure_removes_every_level_of_a_nested_output_dir_it_made(env, capsys):
    nested = env.out / "a" / "b"
    argv = env.argv("minidisc", "--output_dir", str(nested), teacher=env.ck.at90)
    assert main(argv) == 2
    assert "not above the teacher's sparsity" in capsys.readouterr().err
    assert not env.out.exists()


def _crlf_bom(path: Path) -> None:
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())


@pytest.mark.parametrize("task", ["sst2", "conll"])
def test_crlf_line_endings_and_a_bom_are_accepted(env, capsys, task):
    for f in (env.data / task).iterdir():
        _crlf_bom(f)
    assert (env.data / task / "train.txt" if task == "conll"
            else env.data / task / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    argv = env.argv("finetune", "--do_train", "--do_test", "--do_infer", task=task)
    assert main(argv) == 0, capsys.readouterr().err
    kind = "ner" if task == "conll" else "cls"
    run = env.out / f"sparsebert_{kind}_finetune_{task}"
    saved = json.loads((run / "results.json").read_text())
    assert saved["train"] and saved["final"]["dev"]["acc" if task == "sst2" else "f1"]
    if task == "conll":  # CoNLL test files carry tags
        assert saved["final"]["test"] == saved["final"]["dev"]  # the fixture's files are equal
    assert len(saved["final"]["predictions"]) == 1


# --- through the real entry point -----------------------------------------------------------


@pytest.mark.parametrize("extra, fragment", [
    (["--mode", "shrink"], "--mode"),
    (["--lam", "abc"], "--lam"),
    (["--data_dir", "{tmp}/nowhere"], "{tmp}/nowhere/sst2: task folder not found"),
])
def test_run_py_prints_one_line_and_exits_2(env, extra, fragment):
    argv = env.argv("finetune") + [env.fmt(x) for x in extra]
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), *argv], cwd=env.tmp,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert env.fmt(fragment) in lines[0]
    assert not env.out.exists()


# --- one home for each fact -----------------------------------------------------------------


def test_one_list_of_modes():
    from minidisc import cli, registry, report
    from minidisc.modes import MODES as RUNNERS

    assert tuple(RUNNERS) == registry.MODES
    assert report.MODES is registry.MODES
    assert cli.build_parser()._option_string_actions["--mode"].choices == registry.MODES


def test_one_results_file_name_and_one_conll_tag_list():
    from minidisc import registry, report
    from minidisc.data.tasks import TASKS

    assert report.RESULTS is registry.RESULTS
    conll = TASKS["conll"]
    assert conll.hub.labels is conll.labels  # the hub's tag ids index the task's own tags
