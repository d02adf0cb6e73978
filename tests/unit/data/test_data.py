"""Readers of every task in TASKS, on small files written in the original GLUE/CoNLL formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from minidisc.data.examples import PairExample, TagExample
from minidisc.data.readers import GlueLayout, read_glue
from minidisc.data.tasks import CONLL_TAGS, TASKS
from minidisc.errors import MiniDiscError

REPO = ROOT
QUOTED = 'He said " the witness " was "100 percent" sure .'


def put(data_dir: Path, task: str, split: str, lines: list[str], bom: bool = False,
        newline: str = "\n") -> Path:
    """Write one task file exactly as given (tab-separated lines, optional UTF-8 BOM)."""
    path = TASKS[task].path(data_dir, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def tsv(*rows: tuple[str, ...]) -> list[str]:
    return ["\t".join(r) for r in rows]


def check(examples: list[PairExample], expected: list[tuple[str, str, str | None, str | None]]):
    """expected: (guid, text_a, text_b, label) per example."""
    got = [(e.guid, e.text_a, e.text_b, e.label) for e in examples]
    assert got == expected


# ---------------------------------------------------------------- GLUE readers, one per task


def test_cola_train_has_no_header_test_has_one(tmp_path):
    put(tmp_path, "cola", "train", tsv(("gj04", "1", "", "Our friends won't buy this analysis."),
                                       ("gj04", "0", "*", QUOTED)))
    put(tmp_path, "cola", "dev", tsv(("clc95", "1", "", "The sailors rode the breeze.")))
    put(tmp_path, "cola", "test", tsv(("index", "sentence"), ("0", "Bill whistled."),
                                      ("1", QUOTED)))
    check(TASKS["cola"].read(tmp_path, "train"),
          [("0", "Our friends won't buy this analysis.", None, "1"), ("1", QUOTED, None, "0")])
    check(TASKS["cola"].read(tmp_path, "dev"), [("0", "The sailors rode the breeze.", None, "1")])
    check(TASKS["cola"].read(tmp_path, "test"),
          [("0", "Bill whistled.", None, None), ("1", QUOTED, None, None)])


@pytest.mark.parametrize("task", ["sst2", "demo"])
def test_single_sentence_with_header(tmp_path, task):
    put(tmp_path, task, "train", tsv(("sentence", "label"), ("a charming journey . ", "1"),
                                     (QUOTED, "0")))
    put(tmp_path, task, "dev", tsv(("sentence", "label"), ("unflinchingly bleak", "0")))
    put(tmp_path, task, "test", tsv(("index", "sentence"), ("7", "uneasy mishmash ."),
                                    ("8", QUOTED)))
    # trailing spaces in a sentence are kept: the tokenizer, not the reader, normalises text
    check(TASKS[task].read(tmp_path, "train"),
          [("0", "a charming journey . ", None, "1"), ("1", QUOTED, None, "0")])
    check(TASKS[task].read(tmp_path, "dev"), [("0", "unflinchingly bleak", None, "0")])
    check(TASKS[task].read(tmp_path, "test"),
          [("7", "uneasy mishmash .", None, None), ("8", QUOTED, None, None)])


def test_mrpc_with_bom_and_test_index(tmp_path):
    head = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    put(tmp_path, "mrpc", "train", tsv(head, ("1", "702876", "702977", QUOTED, "Referring .")),
        bom=True)
    put(tmp_path, "mrpc", "dev", tsv(head, ("1", "1355540", "1355592", "He said .", QUOTED),
                                     ("0", "2029631", "2029565", "A .", "B .")), bom=True)
    put(tmp_path, "mrpc", "test", tsv(("index", *head[1:]), ("0", "1089874", "1089925", "C .",
                                                              "D .")))
    check(TASKS["mrpc"].read(tmp_path, "train"), [("0", QUOTED, "Referring .", "1")])
    check(TASKS["mrpc"].read(tmp_path, "dev"),
          [("0", "He said .", QUOTED, "1"), ("1", "A .", "B .", "0")])
    check(TASKS["mrpc"].read(tmp_path, "test"), [("0", "C .", "D .", None)])


STSB_HEAD = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
             "sentence1", "sentence2")


def test_stsb_float_scores(tmp_path):
    meta = ("main-captions", "MSRvid", "2012test", "0001", "none", "none")
    put(tmp_path, "stsb", "train", tsv((*STSB_HEAD, "score"),
                                       ("0", *meta, "A plane is taking off.", QUOTED, "5.000"),
                                       ("1", *meta, "A man.", "A woman.", "0.500")))
    put(tmp_path, "stsb", "test", tsv(STSB_HEAD, ("42", *meta, "A girl.", "A boy.")))
    examples = TASKS["stsb"].read(tmp_path, "train")
    check(examples, [("0", "A plane is taking off.", QUOTED, "5.000"),
                     ("1", "A man.", "A woman.", "0.500")])
    assert [float(e.label) for e in examples] == [5.0, 0.5]
    assert TASKS["stsb"].is_regression and TASKS["stsb"].num_labels == 1
    check(TASKS["stsb"].read(tmp_path, "test"), [("42", "A girl.", "A boy.", None)])


def test_qqp(tmp_path):
    put(tmp_path, "qqp", "dev", tsv(("id", "qid1", "qid2", "question1", "question2",
                                     "is_duplicate"),
                                    ("201359", "303345", "303346", "Why are people?", QUOTED, "0"),
                                    ("263843", "69383", "380476", "Q1?", "Q2?", "1")))
    put(tmp_path, "qqp", "test", tsv(("id", "question1", "question2"), ("0", "Q?", "R?")))
    check(TASKS["qqp"].read(tmp_path, "dev"),
          [("201359", "Why are people?", QUOTED, "0"), ("263843", "Q1?", "Q2?", "1")])
    check(TASKS["qqp"].read(tmp_path, "test"), [("0", "Q?", "R?", None)])


MNLI_PREFIX = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2")


def mnli_row(index: str, s1: str, s2: str, *labels: str) -> tuple[str, ...]:
    return (index, "31193", "31193n", "government", "( ( Conceptually cream ) )", "( Product )",
            "(ROOT (S))", "(ROOT (S))", s1, s2, *labels)


def test_mnli_all_splits(tmp_path):
    put(tmp_path, "mnli", "train", tsv((*MNLI_PREFIX, "label1", "gold_label"),
                                       mnli_row("0", "Conceptually cream.", QUOTED, "neutral",
                                                "neutral")))
    dev_head = (*MNLI_PREFIX, "label1", "label2", "label3", "label4", "label5", "gold_label")
    put(tmp_path, "mnli", "dev_matched",
        tsv(dev_head, mnli_row("0", "A.", "B.", "neutral", "entailment", "neutral", "neutral",
                               "neutral", "neutral")))
    put(tmp_path, "mnli", "dev_mismatched",
        tsv(dev_head, mnli_row("0", "C.", "D.", *["contradiction"] * 6)))
    put(tmp_path, "mnli", "test_matched", tsv(MNLI_PREFIX, mnli_row("9", "E.", "F.")))
    task = TASKS["mnli"]
    assert task.dev_splits == ("dev_matched", "dev_mismatched")
    assert task.test_splits == ("test_matched", "test_mismatched")
    check(task.read(tmp_path, "train"), [("0", "Conceptually cream.", QUOTED, "neutral")])
    check(task.read(tmp_path, "dev_matched"), [("0", "A.", "B.", "neutral")])
    check(task.read(tmp_path, "dev_mismatched"), [("0", "C.", "D.", "contradiction")])
    check(task.read(tmp_path, "test_matched"), [("9", "E.", "F.", None)])
    assert task.submission == {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}


@pytest.mark.parametrize("task,head,labels", [
    ("qnli", ("index", "question", "sentence"), ("entailment", "not_entailment")),
    ("rte", ("index", "sentence1", "sentence2"), ("entailment", "not_entailment")),
    ("wnli", ("index", "sentence1", "sentence2"), ("0", "1")),
])
def test_pair_tasks_with_index(tmp_path, task, head, labels):
    put(tmp_path, task, "train", tsv((*head, "label"), ("0", "What?", QUOTED, labels[0]),
                                     ("1", "A.", "B.", labels[1])))
    put(tmp_path, task, "test", tsv(head, ("0", "C?", "D.")))
    check(TASKS[task].read(tmp_path, "train"),
          [("0", "What?", QUOTED, labels[0]), ("1", "A.", "B.", labels[1])])
    check(TASKS[task].read(tmp_path, "test"), [("0", "C?", "D.", None)])
    assert TASKS[task].labels == labels


def test_bom_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "f.tsv"
    path.write_bytes(b"\xef\xbb\xbfhello\t1\nworld\t0\n")
    layout = GlueLayout(text_a=0, text_b=None, label=1, guid=None, header=False)
    examples = read_glue(path, layout, ("0", "1"))
    assert examples[0].text_a == "hello" and "\ufeff" not in examples[0].text_a
    # a BOM before a header: the header is skipped and the first data row is intact
    put(tmp_path, "sst2", "train", tsv(("sentence", "label"), ("good", "1")), bom=True)
    check(TASKS["sst2"].read(tmp_path, "train"), [("0", "good", None, "1")])


def test_crlf_line_endings(tmp_path):
    put(tmp_path, "sst2", "train", tsv(("sentence", "label"), ("good .", "1"), ("bad .", "0")),
        newline="\r\n")
    check(TASKS["sst2"].read(tmp_path, "train"),
          [("0", "good .", None, "1"), ("1", "bad .", None, "0")])


def test_blank_lines_are_skipped(tmp_path):
    put(tmp_path, "sst2", "dev", ["sentence\tlabel", "good .\t1", "", "bad .\t0", ""])
    assert [e.label for e in TASKS["sst2"].read(tmp_path, "dev")] == ["1", "0"]


def test_unicode_line_separator_inside_a_sentence(tmp_path):
    put(tmp_path, "sst2", "train", tsv(("sentence", "label"), ("odd\u2028break", "1"),
                                       ("next\x85line", "0")))
    check(TASKS["sst2"].read(tmp_path, "train"),
          [("0", "odd\u2028break", None, "1"), ("1", "next\x85line", None, "0")])


def test_every_glue_task_has_a_test_layout_without_labels():
    for name, task in TASKS.items():
        if task.is_ner:
            continue
        assert task.test_layout.label is None, name
        assert task.test_layout.guid == 0, name
        assert set(task.submission) == set(task.test_splits), name


# ---------------------------------------------------------------- CoNLL-2003

CONLL_4COL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER


-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
"quoted" NN I-NP O
"""

CONLL_2COL = """-DOCSTART- O

SOCCER O
- O
JAPAN B-LOC
GET O

Nadim B-PER
Ladki I-PER
"""


def test_conll_four_columns_iob1(tmp_path):
    path = TASKS["conll"].path(tmp_path, "train")
    path.parent.mkdir(parents=True)
    path.write_text(CONLL_4COL, encoding="utf-8")
    examples = TASKS["conll"].read(tmp_path, "train")
    assert all(isinstance(e, TagExample) for e in examples)
    assert [(e.guid, e.words, e.tags) for e in examples] == [
        ("0", ["EU", "rejects", "German", "call", "."], ["I-ORG", "O", "I-MISC", "O", "O"]),
        ("1", ["Peter", "Blackburn"], ["I-PER", "I-PER"]),
        ("2", ["BRUSSELS", '"quoted"'], ["I-LOC", "O"]),
    ]


def test_conll_two_columns_iob2_no_trailing_newline(tmp_path):
    path = TASKS["conll"].path(tmp_path, "dev")
    path.parent.mkdir(parents=True)
    path.write_text(CONLL_2COL.rstrip("\n"), encoding="utf-8")
    examples = TASKS["conll"].read(tmp_path, "dev")
    assert [(e.words, e.tags) for e in examples] == [
        (["SOCCER", "-", "JAPAN", "GET"], ["O", "O", "B-LOC", "O"]),
        (["Nadim", "Ladki"], ["B-PER", "I-PER"]),
    ]
    assert TASKS["conll"].path(tmp_path, "test").name == "test.txt"
    assert TASKS["conll"].labels == CONLL_TAGS and TASKS["conll"].is_ner


# ---------------------------------------------------------------- errors name file and line


def raises(match_path: Path, call, *fragments: str) -> str:
    with pytest.raises(MiniDiscError) as info:
        call()
    msg = str(info.value)
    assert str(match_path) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


@pytest.mark.parametrize("task", sorted(TASKS))
def test_missing_task_folder(tmp_path, task):
    raises(tmp_path / task, lambda: TASKS[task].read(tmp_path, "train"), "task folder not found")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_missing_file(tmp_path, task):
    (tmp_path / task).mkdir()
    split = TASKS[task].dev_splits[0]
    raises(TASKS[task].path(tmp_path, split), lambda: TASKS[task].read(tmp_path, split),
           "file not found")


def test_wrong_column_count_with_header(tmp_path):
    path = put(tmp_path, "sst2", "train", tsv(("sentence", "label"), ("ok", "1"),
                                              ("too", "many", "1")))
    raises(path, lambda: TASKS["sst2"].read(tmp_path, "train"), f"{path}:3:",
           "expected 2 tab-separated columns (sentence, label), found 3")


def test_wrong_column_count_without_header(tmp_path):
    path = put(tmp_path, "cola", "train", tsv(("gj04", "1", "", "fine ."), ("gj04", "1")))
    raises(path, lambda: TASKS["cola"].read(tmp_path, "train"), f"{path}:2:", "malformed")


def test_wrong_column_count_in_test_file(tmp_path):
    path = put(tmp_path, "rte", "test", tsv(("index", "sentence1", "sentence2"),
                                            ("0", "A.", "B.", "entailment")))
    raises(path, lambda: TASKS["rte"].read(tmp_path, "test"), f"{path}:2:")


@pytest.mark.parametrize("task,lines,lineno", [
    ("sst2", tsv(("sentence", "label"), ("fine", "1"), ("bad label", "2")), 3),
    ("rte", tsv(("index", "sentence1", "sentence2", "label"), ("0", "A", "B", "1")), 2),
    ("mrpc", tsv(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                 ("yes", "1", "2", "A", "B")), 2),
    ("cola", tsv(("gj04", "1", "", "fine ."), ("gj04", "x", "", "odd .")), 2),
    ("stsb", tsv((*STSB_HEAD, "score"), ("0", "a", "b", "c", "d", "e", "f", "A", "B", "high")), 2),
])
def test_bad_label(tmp_path, task, lines, lineno):
    path = put(tmp_path, task, "train", lines)
    raises(path, lambda: TASKS[task].read(tmp_path, "train"), f"{path}:{lineno}:", "bad label")


def test_mnli_bad_label(tmp_path):
    path = put(tmp_path, "mnli", "train", tsv((*MNLI_PREFIX, "label1", "gold_label"),
                                              mnli_row("0", "A.", "B.", "neutral", "-")))
    raises(path, lambda: TASKS["mnli"].read(tmp_path, "train"), f"{path}:2:", "bad label")


@pytest.mark.parametrize("task,split", [("sst2", "train"), ("cola", "train"), ("qqp", "test")])
def test_empty_file(tmp_path, task, split):
    path = put(tmp_path, task, split, [])
    path.write_bytes(b"")
    raises(path, lambda: TASKS[task].read(tmp_path, split))


def test_header_only_file(tmp_path):
    path = put(tmp_path, "sst2", "dev", ["sentence\tlabel"])
    raises(path, lambda: TASKS["sst2"].read(tmp_path, "dev"), "no examples")


def test_not_utf8(tmp_path):
    path = put(tmp_path, "sst2", "dev", [])
    path.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    raises(path, lambda: TASKS["sst2"].read(tmp_path, "dev"), "UTF-8")


def test_conll_unknown_tag(tmp_path):
    path = TASKS["conll"].path(tmp_path, "train")
    path.parent.mkdir(parents=True)
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP B-FOO\n")
    raises(path, lambda: TASKS["conll"].read(tmp_path, "train"), f"{path}:4:", "B-FOO")


def test_conll_one_column_line(tmp_path):
    path = TASKS["conll"].path(tmp_path, "train")
    path.parent.mkdir(parents=True)
    path.write_text("EU B-ORG\nrejects\n")
    raises(path, lambda: TASKS["conll"].read(tmp_path, "train"), f"{path}:2:", "malformed")


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_conll_empty(tmp_path, text):
    path = TASKS["conll"].path(tmp_path, "dev")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    raises(path, lambda: TASKS["conll"].read(tmp_path, "dev"), "no sentences")


# ---------------------------------------------------------------- the committed demo task


def test_committed_demo_files_read_back():
    data_dir = REPO / "datasets"
    if not (data_dir / "demo").is_dir():
        pytest.skip("datasets/demo not generated (python datasets/make_demo.py)")
    sizes = {s: len(TASKS["demo"].read(data_dir, s)) for s in ("train", "dev", "test")}
    assert sizes == {"train": 2000, "dev": 400, "test": 400}
    train = TASKS["demo"].read(data_dir, "train")
    positive = sum(e.label == "1" for e in train) / len(train)
    assert 0.45 < positive < 0.55
    assert all(e.label is None for e in TASKS["demo"].read(data_dir, "test"))


def test_stsb_score_must_be_finite(tmp_path):
    from minidisc.errors import MiniDiscError

    head = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
            "sentence1", "sentence2", "score")
    put(tmp_path, "stsb", "dev", tsv(head, ("0", "g", "f", "y", "0", "s", "s", "a", "b", "nan")))
    with pytest.raises(MiniDiscError, match="bad label 'nan'"):
        TASKS["stsb"].read(tmp_path, "dev")
