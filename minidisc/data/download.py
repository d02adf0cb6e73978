"""Fetch a GLUE or CoNLL-2003 task from the Hugging Face hub and write its ORIGINAL files.

The tool reads only the original GLUE tsv and CoNLL-2003 formats (what users download by
hand), so hub copies are converted back to those layouts. Columns the hub dropped (MRPC
sentence ids, MNLI parses, STS-B provenance, ...) are filled with a placeholder so that every
column sits where the readers expect it. `datasets` is optional: it is imported only here,
only when a download is asked for.

The downloader is a leaf: it knows the original file formats, and each task it is given
carries its own hub metadata (`Task.hub`: which datasets, which splits, which labels).

    python -m minidisc.data.download mrpc [--data_dir datasets] [--overwrite]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import atomic_write

logger = logging.getLogger(__name__)

PLACEHOLDER = "-"  # stands in for columns the hub copies do not carry
DEFAULT_SPLITS = {"train": "train", "validation": "dev", "test": "test"}


@dataclass(frozen=True)
class Hub:
    """Where a task's copy is on the Hugging Face hub.

    `sources`: (dataset, config, revision) to try in turn; `splits`: hub split -> file stem in
    <data_dir>/<task>/; `labels`: what each hub label id stands for in the original files
    (empty: the id itself; CoNLL: the NER tag of each id).
    """

    sources: tuple[tuple[str, str | None, str | None], ...]
    splits: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    labels: tuple[str, ...] = ()


class HubTask(Protocol):
    """What the downloader needs of a task (minidisc.data.tasks.Task has it)."""

    name: str
    hub: Hub | None
    is_ner: bool

    def read_file(self, path: Path, split: str) -> list: ...


# Hub text fields of each GLUE task (second None: single-sentence task).
TEXT_FIELDS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}

_MNLI_PREFIX = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                "sentence1", "sentence2")
_STSB_PREFIX = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
                "sentence1", "sentence2")
_MRPC_TAIL = ("#1 ID", "#2 ID", "#1 String", "#2 String")

# Characters that would end a row early: tabs, and everything str.splitlines breaks on.
_ROW_BREAKERS = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _clean(text: Any) -> str:
    """One tsv cell: a tab or line break inside a sentence would shift or split the row."""
    return _ROW_BREAKERS.sub(" ", "" if text is None else str(text))


GLUE_TASKS = tuple(TEXT_FIELDS)  # the tasks whose original tsv layouts glue_lines writes


def _label(task: str, value: Any, where: str, labels: Sequence[str]) -> str:
    """A hub label id as the original file writes it (-1, the hub's 'no label', is refused)."""
    names = labels or None
    try:
        number = float(value) if task == "stsb" else int(value)
    except (TypeError, ValueError):
        raise MiniDiscError(f"{where}: bad label {value!r}") from None
    if number < 0 or (names is not None and number >= len(names)):
        raise MiniDiscError(f"{where}: missing or unknown label (hub label {value!r})")
    if task == "stsb":
        return f"{number:.3f}"  # the original files' format, e.g. 3.800
    return names[int(number)] if names is not None else str(int(number))


def _glue_layout(task: str, split: str) -> tuple[tuple[str, ...] | None, int]:
    """(header or None, number of label columns) of one original GLUE file."""
    if split.startswith("test"):
        heads = {"cola": ("index", "sentence"), "sst2": ("index", "sentence"),
                 "mrpc": ("index", *_MRPC_TAIL), "stsb": _STSB_PREFIX,
                 "qqp": ("id", "question1", "question2"), "mnli": _MNLI_PREFIX,
                 "qnli": ("index", "question", "sentence")}
        return heads.get(task, ("index", "sentence1", "sentence2")), 0
    if task == "mnli":  # train has one annotator label, dev five, then gold_label
        votes = 1 if split == "train" else 5
        return (*_MNLI_PREFIX, *(f"label{i}" for i in range(1, votes + 1)), "gold_label"), votes + 1
    heads = {"cola": None, "sst2": ("sentence", "label"), "mrpc": ("Quality", *_MRPC_TAIL),
             "stsb": (*_STSB_PREFIX, "score"),
             "qqp": ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
             "qnli": ("index", "question", "sentence", "label")}
    return heads.get(task, ("index", "sentence1", "sentence2", "label")), 1


def glue_lines(task: str, split: str, rows: Iterable[Mapping[str, Any]],
               labels: Sequence[str] = ()) -> list[str]:
    """Rows with the hub's field names -> the lines of the original GLUE tsv for `split`.

    `split` is the file stem (train, dev, dev_matched, test, test_matched, ...); `labels`:
    Hub.labels. Test splits get the test layout (index column, no label column); the hub's
    -1 test labels are ignored.
    """
    if task not in TEXT_FIELDS:
        raise MiniDiscError(f"{task}: not a GLUE task (one of {', '.join(GLUE_TASKS)})")
    test = split.startswith("test")
    fa, fb = TEXT_FIELDS[task]
    header, n_labels = _glue_layout(task, split)
    ph = PLACEHOLDER
    lines = ["\t".join(header)] if header is not None else []
    for n, row in enumerate(rows):
        idx = str(row.get("idx", n))
        a = _clean(row.get(fa))
        b = _clean(row.get(fb)) if fb is not None else ""
        label = "" if test else _label(task, row.get("label"), f"{task} {split} row {n}", labels)
        if task == "cola":
            cols = [idx, a] if test else [ph, label, "*" if label == "0" else "", a]
        elif task == "sst2":
            cols = [idx, a] if test else [a, label]
        elif task == "mrpc":
            cols = [idx if test else label, ph, ph, a, b]
        elif task == "stsb":
            cols = [idx, *[ph] * 6, a, b]
        elif task == "qqp":
            cols = [idx, a, b] if test else [idx, ph, ph, a, b]
        elif task == "mnli":
            cols = [idx, *[ph] * 7, a, b]
        else:  # qnli, rte, wnli
            cols = [idx, a, b]
        if task not in ("cola", "sst2", "mrpc"):
            cols += [label] * n_labels
        lines.append("\t".join(cols))
    return lines


def _tag_name(value: Any, names: Sequence[str] | None) -> str:
    """A tag given as a name or as an id into `names`; the placeholder when unknown."""
    if isinstance(value, str):
        return value
    if names is None or not isinstance(value, int) or not 0 <= value < len(names):
        return PLACEHOLDER
    return names[value]


def _word(token: Any) -> str:
    """CoNLL columns are whitespace-separated, so a token must be one non-empty field."""
    return "_".join(str(token).split()) or "_"


def conll_lines(rows: Iterable[Mapping[str, Any]], tags: Sequence[str],
                pos_names: Sequence[str] | None = None,
                chunk_names: Sequence[str] | None = None) -> list[str]:
    """Hub CoNLL-2003 rows (tokens, pos_tags, chunk_tags, ner_tags) -> `word POS chunk NER` lines.

    Sentences are separated by blank lines after a leading `-DOCSTART-` line, as in the
    original files. NER ids index `tags` (Hub.labels); POS/chunk ids are named with
    `pos_names`/`chunk_names` (the hub's feature names) when given, else written as a
    placeholder.
    """
    lines = ["-DOCSTART- -X- -X- O", ""]
    for n, row in enumerate(rows):
        tokens = list(row.get("tokens") or [])
        if not tokens:
            continue
        if tokens == ["-DOCSTART-"]:
            continue  # the leading one is already written
        ner = list(row.get("ner_tags") or [])
        if len(ner) != len(tokens):
            raise MiniDiscError(f"conll row {n}: {len(tokens)} tokens but {len(ner)} tags")
        pos = list(row.get("pos_tags") or [None] * len(tokens))
        chunk = list(row.get("chunk_tags") or [None] * len(tokens))
        for i, token in enumerate(tokens):
            tag = _tag_name(ner[i], tags)
            if tag == PLACEHOLDER:
                raise MiniDiscError(f"conll row {n}: unknown NER tag id {ner[i]!r}")
            p = _tag_name(pos[i], pos_names) if pos[i] is not None else PLACEHOLDER
            c = _tag_name(chunk[i], chunk_names) if chunk[i] is not None else PLACEHOLDER
            lines.append(f"{_word(token)} {p} {c} {tag}")
        lines.append("")
    return lines


def _hub(task: HubTask) -> Hub:
    if task.hub is None:
        if task.name == "demo":
            raise MiniDiscError("demo is generated locally: python datasets/make_demo.py")
        raise MiniDiscError(f"{task.name}: not on the hub (only GLUE tasks and conll are)")
    return task.hub


def write_task(task: HubTask, splits: Mapping[str, Sequence[Mapping[str, Any]]],
               out_dir: Path, pos_names: Sequence[str] | None = None,
               chunk_names: Sequence[str] | None = None) -> dict[str, Path]:
    """Write the original-format files of `task` into `out_dir` from hub-split rows.

    `splits` maps hub split names (train, validation, test, validation_matched, ...) to rows;
    splits the task does not use are ignored. Returns the files written, by split.
    """
    hub = _hub(task)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for hub_split, stem in hub.splits.items():
        if hub_split not in splits:
            continue
        if task.is_ner:
            path = out_dir / f"{stem}.txt"
            lines = conll_lines(splits[hub_split], hub.labels, pos_names, chunk_names)
        else:
            path = out_dir / f"{stem}.tsv"
            lines = glue_lines(task.name, stem, splits[hub_split], hub.labels)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        written[stem] = path
    return written


def _import_datasets() -> Any:
    """The optional `datasets` package, or a clear error (the repo's own datasets/ folder
    is importable as an empty namespace package, hence the attribute check)."""
    try:
        import datasets
    except ImportError:
        datasets = None
    if not hasattr(datasets, "load_dataset"):
        raise MiniDiscError(
            "downloading needs the optional package 'datasets' (pip install datasets); "
            "or put the task files in datasets/<task>/ by hand (see datasets/README.md)"
        )
    return datasets


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _feature_names(split_ds: Any, field: str) -> list[str] | None:
    try:
        return list(split_ds.features[field].feature.names)
    except (AttributeError, KeyError, TypeError):
        return None


def fetch(task: HubTask) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str] | None]]:
    """Load every split of `task` from the hub: (rows per hub split, tag-name lists)."""
    splits = _hub(task).splits
    datasets = _import_datasets()
    errors = []
    for hub, config, revision in task.hub.sources:
        try:
            ds = datasets.load_dataset(hub, config, **({"revision": revision} if revision else {}))
        # Offline, renamed, gated, script-only...: `datasets` raises many types; note, go on.
        except Exception as e:  # noqa: BLE001
            name = f"{hub}{'/' + config if config else ''}{'@' + revision if revision else ''}"
            errors.append(f"{name}: {_one_line(e)}")
            continue
        missing = [s for s in splits if s not in ds]
        if missing:
            errors.append(f"{hub}: no split(s) {', '.join(missing)}")
            continue
        rows = {s: [dict(r) for r in ds[s]] for s in splits}
        names = {"pos_names": None, "chunk_names": None}
        if task.is_ner:
            names = {"pos_names": _feature_names(ds["train"], "pos_tags"),
                     "chunk_names": _feature_names(ds["train"], "chunk_tags")}
        return rows, names
    raise MiniDiscError(f"could not download {task.name} ({'; '.join(errors)})")


def download(task: HubTask, data_dir: str | Path = "datasets", overwrite: bool = False) -> Path:
    """Download `task` into data_dir/<task>/ atomically and check that it reads back: a
    failed or interrupted download never leaves a half-written task folder."""
    _hub(task)
    data_dir = Path(data_dir)
    target = data_dir / task.name
    if target.exists() and not overwrite:
        raise MiniDiscError(f"{target}: already exists (remove it or pass --overwrite)")
    splits, names = fetch(task)
    data_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as tmp:
        written = write_task(task, splits, tmp, **names)
        counts = {stem: len(task.read_file(path, stem)) for stem, path in written.items()}
    logger.info("wrote %s: %s", target, ", ".join(f"{s} {n}" for s, n in counts.items()))
    return target


def main(tasks: Mapping[str, HubTask], argv: Sequence[str] | None = None) -> int:
    """CLI entry for the tasks on the hub among `tasks`: 0 on success, 2 with a one-line
    `error: ...` on stderr otherwise."""
    p = argparse.ArgumentParser(
        prog="python -m minidisc.data.download",
        description="Download a GLUE/CoNLL-2003 task (needs the optional 'datasets' package) "
        "and write it in its original file format to <data_dir>/<task>/.",
    )
    p.add_argument("task", choices=[name for name, t in tasks.items() if t.hub is not None])
    p.add_argument("--data_dir", default="datasets", help="folder holding <task>/ folders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing task folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return exit_code(lambda: download(tasks[args.task], args.data_dir, args.overwrite))


if __name__ == "__main__":
    # the command line, not the module: the task table imports this leaf, not the reverse
    from minidisc.data.tasks import TASKS

    sys.exit(main(TASKS))
