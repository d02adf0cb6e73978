"""Fuzz every task reader: whatever a data file holds, reading it gives examples or a one-line
MiniDiscError, never another exception."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minidisc.data.examples import PairExample, TagExample
from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError

READERS = [(name, split) for name, task in sorted(TASKS.items())
           for split in ("train", *task.dev_splits, *task.test_splits)]

_LABELS = sorted({label for task in TASKS.values() for label in task.labels})
_CELL = st.one_of(
    st.text(max_size=10),
    st.sampled_from([*_LABELS, "", " ", "nan", "inf", "-1e999", "3.5", "１", "1_0",
                     "-DOCSTART-", "\ufeff", "\u2028", "\x00", "\r"]),
)
_ROWS = st.lists(st.lists(_CELL, max_size=12).map("\t".join), max_size=8)
_ENDINGS = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])
_FIELD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"),
                 max_size=10)
_BOM = st.sampled_from(["", "\ufeff"])
_STRUCTURED = st.builds(lambda bom, rows, end: bom + end.join(rows), _BOM, _ROWS, _ENDINGS)
_CONLL = st.lists(st.lists(_CELL, max_size=5).map(" ".join), max_size=10).map("\n".join)


@st.composite
def _almost_valid(draw, task_name: str, split: str) -> str:
    """Files shaped like the task's own (header, widths, labels), with a few cells gone wrong,
    so the fuzz reaches label and column checks, not only the first line."""
    task = TASKS[task_name]
    good = st.sampled_from(task.labels or ("0.5", "4", "1e3"))
    label_cell = st.one_of(good, good, good, good, good, _CELL)
    field = st.one_of(_FIELD, _FIELD, _FIELD, _CELL)
    if task.is_ner:
        word = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")),
                       min_size=1, max_size=6)
        line = st.one_of(st.builds(lambda w, t: f"{w} NN B-NP {t}", word, label_cell),
                         st.just(""), st.just("-DOCSTART- -X- -X- O"), _CELL)
        return draw(_BOM) + draw(_ENDINGS).join(draw(st.lists(line, max_size=12)))
    layout = task.test_layout if split.startswith("test") else task.train_layout
    cols = [c for c in (layout.text_a, layout.text_b, layout.label, layout.guid)
            if c is not None and c >= 0]
    width = draw(st.integers(max(cols, default=0) + 1, max(cols, default=0) + 3))

    def row() -> list[str]:
        cells = [draw(field) for _ in range(width)]
        if layout.label is not None:
            cells[layout.label] = draw(label_cell)
        if draw(st.integers(0, 9)) == 0:  # a row of the wrong width
            cells = cells[:-1] if draw(st.booleans()) else [*cells, "x"]
        return cells

    lines = [[f"c{i}" for i in range(width)]] if layout.header else []
    lines += [row() for _ in range(draw(st.integers(0, 5)))]
    return draw(_BOM) + draw(_ENDINGS).join("\t".join(c) for c in lines)


def _read(task_name: str, split: str, content: str | bytes):
    task = TASKS[task_name]
    with tempfile.TemporaryDirectory() as tmp:
        path = task.path(tmp, split)
        path.parent.mkdir(parents=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass", newline="")
        try:
            return task.read(tmp, split)
        except MiniDiscError as e:
            assert "\n" not in str(e) and str(e).startswith(str(Path(tmp))), str(e)
            return None


def _check(task_name: str, split: str, examples) -> None:
    if examples is None:
        return
    task = TASKS[task_name]
    assert isinstance(examples, list) and examples
    for ex in examples:
        if task.is_ner:
            assert isinstance(ex, TagExample) and ex.words
            assert len(ex.words) == len(ex.tags) and set(ex.tags) <= set(task.labels)
        else:
            assert isinstance(ex, PairExample) and isinstance(ex.text_a, str)
            if ex.label is not None:
                if task.is_regression:
                    assert math.isfinite(float(ex.label))
                else:
                    assert ex.label in task.labels


FUZZ = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("task_name, split", READERS, ids=[f"{t}-{s}" for t, s in READERS])
@FUZZ
@given(data=st.data())
def test_reader_gives_examples_or_a_one_line_error(task_name, split, data):
    content = data.draw(st.one_of(st.text(), _STRUCTURED, _CONLL,
                                  _almost_valid(task_name, split)), label="content")
    _check(task_name, split, _read(task_name, split, content))


@pytest.mark.parametrize("task_name", sorted(TASKS))
@FUZZ
@given(content=st.binary(max_size=200))
def test_reader_on_arbitrary_bytes(task_name, content):
    _check(task_name, "train", _read(task_name, "train", content))
