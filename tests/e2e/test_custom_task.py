"""--task_name custom: a user's own CSV/TSV/JSON Lines (or CoNLL-style) files, read by column
name, through the real modes (tiny model, few steps) and through `resolve_task` directly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import FAST_FLAGS, sentiment_rows

from minidisc.cli import parse_args
from minidisc.data.tasks import resolve_task
from minidisc.errors import MiniDiscError
from minidisc.main import execute
from minidisc.predict import main as predict_main


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _task(*flags: str):
    """The Task that run.py would resolve for these flags (parse, validate, read)."""
    return resolve_task(parse_args(["--mode", "finetune", "--task_name", "custom", *flags]).data)


def _sentiment_csv(folder: Path, split: str, n: int, seed: int) -> Path:
    # commas and quotes inside a cell: CSV quoting must keep them in the text
    rows = [[str(i), f'{s}, "really"', "pos" if y else "neg"]
            for i, (s, y) in enumerate(sentiment_rows(n, seed))]
    return _write_csv(folder / f"{split}.csv", ["id", "review", "sentiment"], rows)


# --- end to end ---------------------------------------------------------------------------


def test_csv_classification_finetune_sparsify_distill_minidisc(tiny_bert, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    test = _write_csv(data / "test.csv", ["review"],
                      [[s] for s, _ in sentiment_rows(8, 3)])  # no label column: predict only
    out = tmp_path / "out"
    task = ["--task_name", "custom", "--train_file", str(_sentiment_csv(data, "train", 96, 1)),
            "--validation_file", str(_sentiment_csv(data, "dev", 32, 2)),
            "--text_columns", "review", "--label_column", "sentiment", "--output_dir", str(out),
            *FAST_FLAGS]
    res = execute(["--mode", "finetune", *task, "--teacher_model_path", str(tiny_bert),
                   "--num_train_epochs", "3", "--test_file", str(test), "--do_train",
                   "--do_infer"])
    assert res["selection_metric"] == "acc" and res["task"] == "custom"
    assert set(res["final"]["dev"]) == {"acc", "macro_f1"}
    finetuned = out / "sparsebert_cls_finetune_custom"
    lines = (finetuned / "custom_test.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 9
    assert {x.split("\t")[1] for x in lines[1:]} <= {"neg", "pos"}
    config = json.loads((finetuned / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}  # sorted, as read from train.csv

    execute(["--mode", "sparsify", *task, "--teacher_model_path", str(finetuned)])
    prunable = out / "sparsebert_cls_sparsify_custom"
    res = execute(["--mode", "distill", *task, "--teacher_model_path", str(prunable),
                   "--layer_or_sparsity", "1L", "--num_train_epochs", "1"])
    assert res["final"]["num_layers"] == 1
    res = execute(["--mode", "minidisc", *task, "--teacher_model_path", str(prunable),
                   "--num_train_epochs", "1", "--log_interval", "6"])
    assert res["final"]["sparsity"] == 90
    assert set(res["final"]["dev"]) == {"acc", "macro_f1"}
    preds = tmp_path / "preds.csv"  # the input's format
    assert predict_main([str(out / "sparsebert_cls_minidisc_90S_lam0.2_custom"), "--input",
                         str(test), "--text_columns", "review", "--output", str(preds)]) == 0
    rows = preds.read_text().splitlines()
    assert len(rows) == 9 and rows[0].split(",")[:2] == ["review", "prediction"]
    assert {r.split(",")[1] for r in rows[1:]} <= {"neg", "pos"}


def test_jsonl_regression_sentence_pairs_finetune(tiny_bert, tmp_path):
    def rows(n: int, seed: int) -> list[dict]:
        return [{"q": s, "a": "the film", "score": 4.5 if y else 0.5, "id": i}
                for i, (s, y) in enumerate(sentiment_rows(n, seed))]

    train = _write_jsonl(tmp_path / "train.jsonl", rows(64, 1))
    dev = _write_jsonl(tmp_path / "dev.json", rows(16, 2))
    res = execute(["--mode", "finetune", "--task_name", "custom", "--task_type", "regression",
                   "--train_file", str(train), "--validation_file", str(dev), "--text_columns",
                   "q,a", "--label_column", "score", "--teacher_model_path", str(tiny_bert),
                   "--output_dir", str(tmp_path / "out"), "--num_train_epochs", "1",
                   *FAST_FLAGS])
    assert res["selection_metric"] == "corr"
    assert set(res["final"]["dev"]) == {"pearson", "spearman", "corr"}


def test_conll_style_tagging_finetune(tiny_bert, tmp_path):
    sents = [[("john", "B-PER"), ("visited", "O"), ("paris", "B-LOC")],
             [("mary", "B-PER"), ("works", "O"), ("at", "O"), ("acme", "B-ORG")]]
    text = "".join("".join(f"{w} NN {t}\n" for w, t in s) + "\n" for s in sents * 4)
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.txt").write_text(text)
    out = tmp_path / "out"
    res = execute(["--mode", "finetune", "--task_name", "custom", "--task_type", "tagging",
                   "--train_file", str(tmp_path / "train.txt"), "--validation_file",
                   str(tmp_path / "dev.txt"), "--test_file", str(tmp_path / "test.txt"),
                   "--teacher_model_path", str(tiny_bert), "--output_dir", str(out),
                   "--num_train_epochs", "1", "--do_train", "--do_test", "--do_infer",
                   *FAST_FLAGS])
    assert res["selection_metric"] == "f1" and res["args"]["data_type"] == "bert_ner"
    assert set(res["final"]["test"]) == {"f1", "precision", "recall"}
    run = out / "sparsebert_ner_finetune_custom"
    first = (run / "custom_test_predictions.txt").read_text().split("\n\n")[0].splitlines()
    assert [x.split()[:2] for x in first] == [["john", "B-PER"], ["visited", "O"],
                                               ["paris", "B-LOC"]]


# --- reading: labels, formats, columns ------------------------------------------------------


def test_labels_are_the_training_files_sorted(tmp_path):
    train = _write_csv(tmp_path / "train.csv", ["t", "y"],
                       [["a", "pos"], ["b", "neutral"], ["c", "neg"], ["d", "pos"]])
    dev = _write_csv(tmp_path / "dev.csv", ["t", "y"], [["e", "neg"]])
    flags = ["--train_file", str(train), "--validation_file", str(dev), "--text_columns", "t",
             "--label_column", "y"]
    task = _task(*flags)
    assert task.labels == ("neg", "neutral", "pos") and task.num_labels == 3
    assert task.test_splits == () and task.selection_metric == "acc"
    assert _task(*flags).labels == task.labels  # stable: the same file, the same ids


def test_tsv_cells_keep_quotes_and_json_labels_become_text(tmp_path):
    (tmp_path / "train.tsv").write_text('s\ty\n"odd" start, and "quotes\t1\nfine\t0\n')
    _write_jsonl(tmp_path / "dev.jsonl", [{"s": "x", "y": 1}, {"s": 7, "y": 0}])
    task = _task("--train_file", str(tmp_path / "train.tsv"), "--validation_file",
                 str(tmp_path / "dev.jsonl"), "--text_columns", "s", "--label_column", "y")
    assert task.labels == ("0", "1")
    assert task.read(None, "train")[0].text_a == '"odd" start, and "quotes'
    assert [(e.text_a, e.label) for e in task.read(None, "dev")] == [("x", "1"), ("7", "0")]


def test_csv_quoted_cell_with_a_line_break(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"two\nlines, one cell",a\nplain,b\n"late",\n')
    dev = _write_csv(tmp_path / "dev.csv", ["text", "label"], [["x", "a"]])
    flags = ["--train_file", str(path), "--validation_file", str(dev), "--text_columns", "text",
             "--label_column", "label"]
    with pytest.raises(MiniDiscError, match=rf"{path}:5: empty label \('label'\)"):
        _task(*flags)  # line 5: the physical line, after the two-line cell
    path.write_text('text,label\n"two\nlines, one cell",a\nplain,b\n')
    assert _task(*flags).read(None, "train")[0].text_a == "two\nlines, one cell"


def test_jsonl_tagging_tags_include_o_and_test_may_lack_tags(tmp_path):
    train = _write_jsonl(tmp_path / "train.jsonl", [{"tokens": ["john", "ran"],
                                                     "tags": ["B-PER", "B-VERB"]}])
    dev = _write_jsonl(tmp_path / "dev.jsonl", [{"tokens": ["mary"], "tags": ["B-PER"]}])
    test = _write_jsonl(tmp_path / "test.jsonl", [{"tokens": ["who", "ran"]}])
    task = _task("--task_type", "tagging", "--train_file", str(train), "--validation_file",
                 str(dev), "--test_file", str(test), "--text_columns", "tokens",
                 "--label_column", "tags")
    assert task.is_ner and task.labels == ("B-PER", "B-VERB", "O")
    assert [(e.words, e.tags) for e in task.read(None, "test")] == [(["who", "ran"], None)]


def test_conll_style_columns_by_index(tmp_path):
    (tmp_path / "train.conll").write_text("NN john B-PER x\nVB ran O x\n\nNN mary B-PER x\n")
    (tmp_path / "dev.conll").write_text("NN ann B-PER x\n")
    task = _task("--task_type", "tagging", "--train_file", str(tmp_path / "train.conll"),
                 "--validation_file", str(tmp_path / "dev.conll"), "--text_columns", "1",
                 "--label_column", "2")
    assert task.labels == ("B-PER", "O")
    assert [(e.words, e.tags) for e in task.read(None, "train")] == [
        (["john", "ran"], ["B-PER", "O"]), (["mary"], ["B-PER"])]
