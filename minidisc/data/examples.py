"""The records readers produce: one shape for sentence(-pair) tasks, one for tagging."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairExample:
    """A GLUE row; `label` is the raw label string (None in test files), `guid` its index."""

    guid: str
    text_a: str
    text_b: str | None
    label: str | None


@dataclass(frozen=True)
class TagExample:
    """A CoNLL sentence: words and their tags (tags of the last column)."""

    guid: str
    words: list[str]
    tags: list[str] | None
