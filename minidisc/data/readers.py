"""Readers for the original GLUE tsv and CoNLL-2003 files.

GLUE sentences contain `"` characters, so rows are split on tabs with no quote processing,
and files may start with a UTF-8 BOM. Every malformed row is reported with file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

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


def _open_lines(path: Path) -> list[str]:
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
    # split on newlines only: str.splitlines would also break at U+2028 etc. inside sentences
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def read_glue(path: Path, layout: GlueLayout, labels: tuple[str, ...] | None) -> list[PairExample]:
    """Read one GLUE tsv. `labels` None means regression (a float label)."""
    lines = _open_lines(path)
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
            raise MiniDiscError(
                f"{path}:{lineno}: malformed row: {len(cols)} columns, expected "
                f"{expected}{named}"
            )
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
    return f"{len(names)} column{'s' * (len(names) != 1)} ({', '.join(names)})"


def read_conll(path: Path, labels: tuple[str, ...]) -> list[TagExample]:
    """CoNLL-2003: `word ... tag` per line, blank lines between sentences, -DOCSTART- breaks."""
    out: list[TagExample] = []
    words: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if words:
            out.append(TagExample(guid=str(len(out)), words=list(words), tags=list(tags)))
            words.clear()
            tags.clear()

    for lineno, line in enumerate(_open_lines(path), start=1):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == "-DOCSTART-":
            flush()
            continue
        if len(cols) < 2:
            raise MiniDiscError(f"{path}:{lineno}: malformed line: 1 column, expected at "
                                "least 2 (word ... tag): is the tag missing?")
        if cols[-1] not in labels:
            raise MiniDiscError(
                f"{path}:{lineno}: unknown tag {cols[-1]!r}: expected one of {', '.join(labels)}"
            )
        words.append(cols[0])
        tags.append(cols[-1])
    flush()
    if not out:
        raise MiniDiscError(f"{path}: no sentences")
    return out
