"""Readers for the original GLUE tsv and CoNLL-2003 files, and for a user's own files.

GLUE sentences contain `"` characters, so rows are split on tabs with no quote processing,
and files may start with a UTF-8 BOM. Every malformed row is reported with file and line.
A user's files (--task_name custom) are CSV, TSV or JSON Lines with named columns, or
CoNLL-style columns for tagging; their type comes from the extension.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minidisc.data.examples import PairExample, TagExample
from minidisc.errors import MiniDiscError


@dataclass(frozen=True)
class GlueLayout:
    """Column indices (0-based; -1 = last) of one GLUE file kind."""

    text_a: int
    text_b: int | None
    label: int | None
    guid: int | None
    header: bool = True
    names: tuple[str, ...] = ()  # column names of a file without a header, for messages


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MiniDiscError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MiniDiscError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        line = data[: e.start + bom].count(b"\n") + 1
        raise MiniDiscError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte "
                            f"{e.start + bom})") from None
    return text


def open_lines(path: Path) -> list[str]:
    """A data file's lines, CR stripped (the readers' and minidisc.predict's one way in)."""
    text = _read_text(path)
    # split on newlines only: str.splitlines would also break at U+2028 etc. inside sentences
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def read_glue(path: Path, layout: GlueLayout, labels: tuple[str, ...] | None) -> list[PairExample]:
    """Read one GLUE tsv. `labels` None means regression (a float label)."""
    lines = open_lines(path)
    if not any(line.strip() for line in lines):
        raise MiniDiscError(f"{path}: empty file" + (" (expected a header line)"
                                                     if layout.header else ""))
    needed = max(c for c in (layout.text_a, layout.text_b, layout.label, layout.guid, 0)
                  if c is not None) + 1
    width = None
    names = layout.names
    if layout.header:
        names = tuple(c.strip() for c in lines[0].split("\t"))
        width = len(names)
        if width < needed:
            raise MiniDiscError(
                f"{path}:1: header has {_columns(names)}, expected at least {needed}")
        lines_iter = enumerate(lines[1:], start=2)
    else:
        lines_iter = enumerate(lines, start=1)
    out: list[PairExample] = []
    for lineno, line in lines_iter:
        if not line.strip():
            continue
        cols = line.split("\t")
        if (width is not None and len(cols) != width) or len(cols) < needed:
            expected = width if width is not None else f"at least {needed}"
            named = f" ({', '.join(names)})" if names else ""
            raise MiniDiscError(f"{path}:{lineno}: malformed row: expected {expected} "
                                f"tab-separated columns{named}, found {len(cols)}")
        label = None
        if layout.label is not None:
            label = cols[layout.label].strip()
            if labels is None:
                try:
                    if not math.isfinite(float(label)):
                        raise ValueError
                except ValueError:
                    raise MiniDiscError(
                        f"{path}:{lineno}: bad label {label!r}: expected a number"
                    ) from None
            elif label not in labels:
                raise MiniDiscError(
                    f"{path}:{lineno}: bad label {label!r}: expected one of {', '.join(labels)}"
                )
        guid = cols[layout.guid].strip() if layout.guid is not None else str(len(out))
        text_b = cols[layout.text_b] if layout.text_b is not None else None
        out.append(PairExample(guid=guid, text_a=cols[layout.text_a], text_b=text_b, label=label))
    if not out:
        raise MiniDiscError(f"{path}: no examples")
    return out


def _columns(names: tuple[str, ...]) -> str:
    return f"{_plural(len(names), 'column')} ({', '.join(names)})"


def read_conll(path: Path, labels: tuple[str, ...] | None, word: int = 0,
               tag: int = -1) -> list[TagExample]:
    """CoNLL-2003: `word ... tag` per line, blank lines between sentences, -DOCSTART- breaks.

    `word`/`tag` are column indices (-1 = last); `labels` None accepts any tag (a user's
    training file, whose tags become the tag set).
    """
    needed = max(2, *(i + 1 if i >= 0 else -i for i in (word, tag)))
    out: list[TagExample] = []
    words: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if words:
            out.append(TagExample(guid=str(len(out)), words=list(words), tags=list(tags)))
            words.clear()
            tags.clear()

    for lineno, line in enumerate(open_lines(path), start=1):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == "-DOCSTART-":
            flush()
            continue
        if len(cols) < needed:
            raise MiniDiscError(
                f"{path}:{lineno}: malformed line: {_plural(len(cols), 'column')}, expected at "
                f"least {needed} (word ... tag): is the tag missing?")
        if labels is not None and cols[tag] not in labels:
            raise MiniDiscError(
                f"{path}:{lineno}: unknown tag {cols[tag]!r}: expected one of {', '.join(labels)}"
            )
        words.append(cols[word])
        tags.append(cols[tag])
    flush()
    if not out:
        raise MiniDiscError(f"{path}: no sentences")
    return out


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


# --- a user's own files (--task_name custom) ----------------------------------------------------

# File type by extension; tagging reads JSON Lines or CoNLL-style columns (any other extension).
TABLE_TYPES = {".csv": "csv", ".tsv": "tsv", ".json": "jsonl", ".jsonl": "jsonl"}


def file_type(path: str | Path, tagging: bool, flag: str) -> str:
    """csv, tsv, jsonl or (tagging only) columns, from the file's extension."""
    kind = TABLE_TYPES.get(Path(path).suffix.lower())
    if tagging:
        if kind == "csv":
            raise MiniDiscError(f"{flag} {path}: tagging reads CoNLL-style columns (word ... "
                                "tag per line; .txt, .conll, .tsv) or JSON Lines, not CSV")
        return "jsonl" if kind == "jsonl" else "columns"
    if kind is None:
        raise MiniDiscError(f"{flag} {path}: unknown file type {Path(path).suffix or '(none)'!r}"
                            f"; use {', '.join(TABLE_TYPES)}")
    return kind


def table_rows(path: Path, kind: str) -> Iterator[tuple[int, dict[str, Any], tuple[str, ...]]]:
    """(line, row, the row's column names) of a CSV/TSV (header line first) or JSON Lines file.

    TSV cells are split on tabs with no quote processing (like GLUE); CSV follows RFC 4180, so
    a quoted cell may hold commas and line breaks.
    """
    text = _read_text(path)
    if kind == "jsonl":
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise MiniDiscError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise MiniDiscError(f"{path}:{lineno}: expected one JSON object per line "
                                    f"(JSON Lines), found a {type(row).__name__}")
            yield lineno, row, tuple(row)
        return
    delimiter, quoting = ("\t", csv.QUOTE_NONE) if kind == "tsv" else (",", csv.QUOTE_MINIMAL)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    sep = "tab" if kind == "tsv" else "comma"
    try:
        header = tuple(c.strip() for c in next(reader, ()))
        if not header:
            raise MiniDiscError(f"{path}: empty file (expected a header line naming the columns)")
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                raise MiniDiscError(
                    f"{path}:{reader.line_num}: malformed row: expected {len(header)} "
                    f"{sep}-separated columns ({', '.join(header)}), found {len(cells)}")
            yield reader.line_num, dict(zip(header, cells)), header
    except csv.Error as e:
        raise MiniDiscError(f"{path}:{reader.line_num}: not valid {kind.upper()} ({e})") from None


def _check_names(path: Path, kind: str, lineno: int, row: dict[str, Any],
                 names: tuple[str, ...], found: tuple[str, ...]) -> None:
    """A column (CSV/TSV header, line 1) or field (JSON Lines row) that is not there: say
    which ones are."""
    for name in names:
        if name not in row:
            where, line = ("field", lineno) if kind == "jsonl" else ("column", 1)
            raise MiniDiscError(f"{path}:{line}: no {where} {name!r} (found: "
                                f"{', '.join(found) or 'none'})")


def _text(value: Any, path: Path, lineno: int, name: str) -> str:
    if value is None or isinstance(value, (list, dict)):
        raise MiniDiscError(f"{path}:{lineno}: {name!r} is {json.dumps(value)[:40]}, expected "
                            "text")
    return value if isinstance(value, str) else json.dumps(value)


def read_table(path: Path, kind: str, text: tuple[str, ...], label: str,
               labels: tuple[str, ...] | None, numeric: bool,
               labelled: bool = True) -> list[PairExample]:
    """Rows of a CSV/TSV/JSONL file as sentence(-pair) examples, read by column name.

    `labels` None accepts any label (the training file, whose labels become the label set);
    `numeric`: a regression score. Without `labelled` a file may lack the label column (a
    test file; the first row decides).
    """
    out: list[PairExample] = []
    names: tuple[str, ...] | None = None
    for lineno, row, found in table_rows(path, kind):
        if names is None:
            names = (*text, *([label] if labelled or label in row else []))
        _check_names(path, kind, lineno, row, names, found)
        a, *b = (_text(row[c], path, lineno, c) for c in text)
        value = None
        if label in names:
            value = _text(row[label], path, lineno, label).strip()
            if numeric:
                try:
                    if not math.isfinite(float(value)):
                        raise ValueError
                except ValueError:
                    raise MiniDiscError(f"{path}:{lineno}: bad label {value!r}: expected a "
                                        "number") from None
            elif not value:
                raise MiniDiscError(f"{path}:{lineno}: empty label ({label!r})")
            elif labels is not None and value not in labels:
                raise MiniDiscError(f"{path}:{lineno}: bad label {value!r}: not in the "
                                    f"training data (labels: {', '.join(labels)})")
        out.append(PairExample(guid=str(len(out)), text_a=a, text_b=b[0] if b else None,
                               label=value))
    if not out:
        raise MiniDiscError(f"{path}: no examples")
    return out


def read_json_tags(path: Path, words: str, tags: str, labels: tuple[str, ...] | None,
                   labelled: bool = True) -> list[TagExample]:
    """JSON Lines with a list of words and a list of tags per line; without `labelled` a file
    may lack the tags (a test file; the first line decides)."""
    out: list[TagExample] = []
    names: tuple[str, ...] | None = None
    for lineno, row, found in table_rows(path, "jsonl"):
        if names is None:
            names = (words, *([tags] if labelled or tags in row else []))
        _check_names(path, "jsonl", lineno, row, names, found)
        seqs = [row[name] for name in names]
        for name, seq in zip(names, seqs):
            if not isinstance(seq, list) or not all(isinstance(x, str) and x for x in seq):
                raise MiniDiscError(f"{path}:{lineno}: {name!r} must be a list of non-empty "
                                    "strings")
        if len(seqs) == 2:
            if len(seqs[1]) != len(seqs[0]):
                raise MiniDiscError(f"{path}:{lineno}: {_plural(len(seqs[0]), 'word')} but "
                                    f"{_plural(len(seqs[1]), 'tag')}")
            bad = [t for t in seqs[1] if labels is not None and t not in labels]
            if bad:
                raise MiniDiscError(f"{path}:{lineno}: unknown tag {bad[0]!r}: not in the "
                                    f"training data (tags: {', '.join(labels)})")
        if seqs[0]:
            out.append(TagExample(guid=str(len(out)), words=seqs[0],
                                  tags=seqs[1] if len(seqs) == 2 else None))
    if not out:
        raise MiniDiscError(f"{path}: no sentences")
    return out
