"""Hub rows -> original GLUE/CoNLL files, checked by reading them back; all offline.

`datasets` is optional and never needed here: conversion is tested on in-memory rows, and the
download path on a fake `datasets` module.
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest

from minidisc.data import download as dl
from minidisc.data.tasks import CONLL_TAGS, GLUE_HUB, TASKS
from minidisc.errors import MiniDiscError

QUOTED = 'He said " the witness " was "100 percent" sure .'


def pair(a: str, b: str, fa: str, fb: str, label, idx: int) -> dict:
    return {fa: a, fb: b, "label": label, "idx": idx}


def glue_rows(task: str) -> dict[str, list[dict]]:
    """Small hub-shaped splits of `task`: two labelled rows per split, -1 labels in test."""
    fa, fb = dl.TEXT_FIELDS[task]
    label_values = {"stsb": (3.799999952316284, 0.0), "mnli": (0, 2)}.get(task, (1, 0))

    def rows(labels) -> list[dict]:
        out = []
        for i, label in enumerate(labels):
            row = {fa: QUOTED if i == 0 else f"text a {i}", "label": label, "idx": 10 + i}
            if fb is not None:
                row[fb] = f"text b {i}"
            out.append(row)
        return out

    splits = {hub: rows((-1, -1) if hub.startswith("test") else label_values)
              for hub in TASKS[task].hub.splits}
    return splits


EXPECTED_LABELS = {
    "cola": ["1", "0"], "sst2": ["1", "0"], "mrpc": ["1", "0"], "qqp": ["1", "0"],
    "wnli": ["1", "0"], "stsb": ["3.800", "0.000"], "mnli": ["entailment", "contradiction"],
    "qnli": ["not_entailment", "entailment"], "rte": ["not_entailment", "entailment"],
}


@pytest.mark.parametrize("task", dl.GLUE_TASKS)
def test_glue_conversion_reads_back(tmp_path, task):
    written = dl.write_task(TASKS[task], glue_rows(task), tmp_path / task)
    stems = list(TASKS[task].hub.splits.values())
    assert sorted(p.name for p in written.values()) == sorted(f"{s}.tsv" for s in stems)
    single = dl.TEXT_FIELDS[task][1] is None
    for stem in stems:
        examples = TASKS[task].read(tmp_path, stem)
        assert len(examples) == 2
        assert examples[0].text_a == QUOTED
        assert examples[1].text_a == "text a 1"
        assert [e.text_b for e in examples] == ([None, None] if single else
                                                ["text b 0", "text b 1"])
        if stem.startswith("test"):
            assert [e.label for e in examples] == [None, None]
            assert [e.guid for e in examples] == ["10", "11"]  # the hub's idx
        else:
            assert [e.label for e in examples] == EXPECTED_LABELS[task]


def test_glue_headers_match_the_original_files(tmp_path):
    def first_line(task: str, stem: str) -> str:
        dl.write_task(TASKS[task], glue_rows(task), tmp_path / task)
        return (tmp_path / task / f"{stem}.tsv").read_text().splitlines()[0]

    assert first_line("sst2", "train") == "sentence\tlabel"
    assert first_line("sst2", "test") == "index\tsentence"
    assert first_line("mrpc", "dev") == "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    assert first_line("mrpc", "test") == "index\t#1 ID\t#2 ID\t#1 String\t#2 String"
    assert first_line("qqp", "train") == "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    assert first_line("qnli", "dev") == "index\tquestion\tsentence\tlabel"
    assert first_line("rte", "test") == "index\tsentence1\tsentence2"
    assert first_line("cola", "test") == "index\tsentence"
    assert first_line("cola", "train").startswith("-\t1\t\t")  # no header, source placeholder
    assert len(first_line("stsb", "train").split("\t")) == 10
    assert len(first_line("stsb", "test").split("\t")) == 9
    assert len(first_line("mnli", "train").split("\t")) == 12
    assert len(first_line("mnli", "dev_mismatched").split("\t")) == 16
    assert len(first_line("mnli", "test_matched").split("\t")) == 10


def test_cola_mark_column(tmp_path):
    dl.write_task(TASKS["cola"], glue_rows("cola"), tmp_path / "cola")
    rows = [r.split("\t") for r in (tmp_path / "cola" / "train.tsv").read_text().splitlines()]
    assert [r[2] for r in rows] == ["", "*"]  # the original marks unacceptable sentences


def test_tabs_and_line_breaks_inside_text_are_flattened():
    lines = dl.glue_lines("sst2", "train", [{"sentence": "a\tb\nc\u2028d\re", "label": 1}])
    assert lines == ["sentence\tlabel", "a b c d e\t1"]


def test_labelled_split_with_missing_label_is_refused():
    with pytest.raises(MiniDiscError, match="row 1"):
        dl.glue_lines("rte", "dev", [pair("a", "b", "sentence1", "sentence2", 0, 0),
                                     pair("a", "b", "sentence1", "sentence2", -1, 1)],
                      TASKS["rte"].hub.labels)
    with pytest.raises(MiniDiscError, match="unknown label"):
        dl.glue_lines("mnli", "train", [{"premise": "a", "hypothesis": "b", "label": 3}],
                      TASKS["mnli"].hub.labels)


def conll_rows() -> dict[str, list[dict]]:
    sent1 = {"id": "0", "tokens": ["EU", "rejects", "German", "call", "."],
             "pos_tags": [22, 42, 16, 21, 7], "chunk_tags": [11, 21, 11, 12, 0],
             "ner_tags": [3, 0, 7, 0, 0]}
    sent2 = {"id": "1", "tokens": ["Peter", "Blackburn"], "pos_tags": [22, 22],
             "chunk_tags": [11, 12], "ner_tags": [1, 2]}
    docstart = {"id": "2", "tokens": ["-DOCSTART-"], "pos_tags": [0], "chunk_tags": [0],
                "ner_tags": [0]}
    sent3 = {"id": "3", "tokens": ["BRUSSELS", "1996-08-22"], "pos_tags": [22, 11],
             "chunk_tags": [11, 12], "ner_tags": [5, 0]}
    return {"train": [sent1, sent2, docstart, sent3], "validation": [sent2],
            "test": [sent1, {"id": "4", "tokens": [], "ner_tags": []}]}


POS = [f"POS{i}" for i in range(47)]
CHUNK = [f"CH{i}" for i in range(23)]


def test_conll_conversion_reads_back(tmp_path):
    dl.write_task(TASKS["conll"], conll_rows(), tmp_path / "conll", pos_names=POS,
                  chunk_names=CHUNK)
    train = TASKS["conll"].read(tmp_path, "train")
    assert [(e.words, e.tags) for e in train] == [
        (["EU", "rejects", "German", "call", "."], ["B-ORG", "O", "B-MISC", "O", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["BRUSSELS", "1996-08-22"], ["B-LOC", "O"]),
    ]
    assert len(TASKS["conll"].read(tmp_path, "dev")) == 1
    assert len(TASKS["conll"].read(tmp_path, "test")) == 1
    lines = (tmp_path / "conll" / "train.txt").read_text().splitlines()
    assert lines[:3] == ["-DOCSTART- -X- -X- O", "", "EU POS22 CH11 B-ORG"]


def test_conll_without_tag_names_keeps_four_columns():
    lines = dl.conll_lines([{"tokens": ["New York", "is"], "pos_tags": [1, 2],
                             "ner_tags": ["B-LOC", "O"]}], CONLL_TAGS)
    assert lines[2:] == ["New_York - - B-LOC", "is - - O", ""]


def test_conll_bad_rows():
    with pytest.raises(MiniDiscError, match="unknown NER tag"):
        dl.conll_lines([{"tokens": ["a"], "ner_tags": [9]}], CONLL_TAGS)
    with pytest.raises(MiniDiscError, match="1 tokens but 2 tags"):
        dl.conll_lines([{"tokens": ["a"], "ner_tags": [0, 0]}], CONLL_TAGS)


# ---------------------------------------------------------------- the download command


class FakeSplit(list):
    """A hub split: a list of row dicts with `features` like datasets.Dataset."""

    def __init__(self, rows, features=None):
        super().__init__(rows)
        self.features = features or {}


def fake_datasets(monkeypatch, data=None, error: Exception | None = None) -> list:
    """Install a fake `datasets` module; returns the list of load_dataset calls."""
    calls = []

    def load_dataset(path, name=None, revision=None):
        calls.append((path, name) if revision is None else (path, name, revision))
        if error is not None:
            raise error
        return data

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def no_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail


def test_missing_datasets_package_exits_2(tmp_path, monkeypatch, capsys):
    no_datasets(monkeypatch)
    assert dl.main(TASKS, ["mrpc", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "'datasets'" in err and "pip install datasets" in err
    assert list(tmp_path.iterdir()) == []


def test_repo_datasets_folder_is_not_mistaken_for_the_package(monkeypatch):
    # without the package, `import datasets` finds the repo's datasets/ as a namespace package
    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))
    with pytest.raises(MiniDiscError, match="pip install datasets"):
        dl.fetch(TASKS["sst2"])


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_module_entry_point_exits_2(tmp_path, monkeypatch, capsys):
    no_datasets(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["download", "rte", "--data_dir", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("minidisc.data.download", run_name="__main__")
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_offline_hub_exits_2_and_tries_every_conll_copy(tmp_path, monkeypatch, capsys):
    calls = fake_datasets(monkeypatch, error=ConnectionError("Couldn't reach the hub\nmore"))
    assert dl.main(TASKS, ["conll", "--data_dir", str(tmp_path)]) == 2
    assert calls == [("eriktks/conll2003", None),
                     ("eriktks/conll2003", None, "refs/convert/parquet"), ("conll2003", None)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ConnectionError: Couldn't reach the hub" in err
    assert list(tmp_path.iterdir()) == []


def test_download_writes_task_folder(tmp_path, monkeypatch):
    calls = fake_datasets(monkeypatch, data=glue_rows("mnli"))
    assert dl.main(TASKS, ["mnli", "--data_dir", str(tmp_path)]) == 0
    assert calls == [(GLUE_HUB, "mnli")]
    assert sorted(p.name for p in (tmp_path / "mnli").iterdir()) == [
        "dev_matched.tsv", "dev_mismatched.tsv", "test_matched.tsv", "test_mismatched.tsv",
        "train.tsv"]
    assert [p.name for p in tmp_path.iterdir()] == ["mnli"]  # no temporary folder left
    assert TASKS["mnli"].read(tmp_path, "dev_mismatched")[0].label == "entailment"


def test_download_conll_uses_feature_names(tmp_path, monkeypatch):
    features = {"pos_tags": types.SimpleNamespace(feature=types.SimpleNamespace(names=POS)),
                "chunk_tags": types.SimpleNamespace(feature=types.SimpleNamespace(names=CHUNK))}
    data = {k: FakeSplit(v, features) for k, v in conll_rows().items()}
    fake_datasets(monkeypatch, data=data)
    target = dl.download(TASKS["conll"], tmp_path)
    assert target == tmp_path / "conll"
    assert "EU POS22 CH11 B-ORG" in (target / "train.txt").read_text()


def test_existing_folder_needs_overwrite(tmp_path, monkeypatch, capsys):
    fake_datasets(monkeypatch, data=glue_rows("rte"))
    (tmp_path / "rte").mkdir()
    (tmp_path / "rte" / "old.txt").write_text("x")
    assert dl.main(TASKS, ["rte", "--data_dir", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert dl.main(TASKS, ["rte", "--data_dir", str(tmp_path), "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "rte").iterdir()) == [
        "dev.tsv", "test.tsv", "train.tsv"]
    assert [p.name for p in tmp_path.iterdir()] == ["rte"]


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch, capsys):
    data = glue_rows("qnli")
    data["validation"][1]["label"] = -1  # a labelled split with a missing label
    fake_datasets(monkeypatch, data=data)
    assert dl.main(TASKS, ["qnli", "--data_dir", str(tmp_path)]) == 2
    assert "row 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_hub_copy_without_a_split_is_reported(tmp_path, monkeypatch):
    data = glue_rows("wnli")
    del data["test"]
    fake_datasets(monkeypatch, data=data)
    with pytest.raises(MiniDiscError, match="no split"):
        dl.download(TASKS["wnli"], tmp_path)
    assert not Path(tmp_path / "wnli").exists()


def test_demo_and_unknown_tasks_are_refused(tmp_path, capsys):
    with pytest.raises(MiniDiscError, match="make_demo.py"):
        dl.download(TASKS["demo"], tmp_path)
    with pytest.raises(SystemExit) as info:
        dl.main(TASKS, ["squad", "--data_dir", str(tmp_path)])
    assert info.value.code == 2 and "invalid choice: 'squad'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_every_task_but_demo_is_on_the_hub_with_the_splits_it_reads():
    assert {name for name, t in TASKS.items() if t.hub is not None} == set(TASKS) - {"demo"}
    for task in dl.GLUE_TASKS:
        stems = set(TASKS[task].hub.splits.values())
        assert stems == set(TASKS[task].dev_splits) | set(TASKS[task].test_splits) | {"train"}
