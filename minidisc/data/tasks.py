"""The task registry: for each task, its files, column layout, labels, metric and defaults;
and `resolve_task`, the one way from the command line's task flags to a Task."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from minidisc import metrics
from minidisc.data.download import Hub, download
from minidisc.data.examples import PairExample, TagExample
from minidisc.data.readers import (
    GlueLayout,
    file_type,
    read_conll,
    read_glue,
    read_json_tags,
    read_table,
)
from minidisc.errors import MiniDiscError

logger = logging.getLogger(__name__)

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
TASK_TYPES = ("classification", "regression", "tagging")
CUSTOM = "custom"  # --task_name of a user's own files
# The flags of a custom task and the Namespace attributes they set, by split.
FILE_FLAGS = {"train": "train_file", "dev": "validation_file", "test": "test_file"}
CUSTOM_FLAGS = (*FILE_FLAGS.values(), "text_columns", "label_column", "task_type")
GLUE_HUB = "nyu-mll/glue"
# Copies of CoNLL-2003 to try in turn. The hub's automatic parquet conversion serves datasets
# that are published as a loading script, which `datasets` >= 4 no longer runs.
CONLL_HUB = Hub((("eriktks/conll2003", None, None),
                 ("eriktks/conll2003", None, "refs/convert/parquet"), ("conll2003", None, None)),
                labels=CONLL_TAGS)  # the hub's NER tag ids index this order


@dataclass(frozen=True)
class UserFiles:
    """Where a custom task's examples are: one file per split, and the columns to read (names;
    for a CoNLL-style columns file, indices as text, None for the defaults: 0 and last)."""

    paths: dict[str, Path]
    text_columns: tuple[str, ...]
    label_column: str | None


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]  # empty for regression; the tag set for tagging
    metric: Callable[..., dict[str, float]]
    metric_names: tuple[str, ...]
    selection_metric: str
    kind: str = "classification"  # one of TASK_TYPES
    train_layout: GlueLayout | None = None  # None: CoNLL format (or a user's files)
    test_layout: GlueLayout | None = None
    dev_splits: tuple[str, ...] = ("dev",)  # the first one selects checkpoints
    test_splits: tuple[str, ...] = ("test",)
    submission: dict[str, str] = field(default_factory=dict)  # test split -> GLUE file name
    files: UserFiles | None = None  # a custom task's files (else <data_dir>/<name>/<split>)
    score_range: tuple[float, float] | None = None  # predictions are clipped to it (STS-B)
    hub: Hub | None = None  # where `python -m minidisc.data.download` fetches it from

    @property
    def is_ner(self) -> bool:
        return self.kind == "tagging"

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    def path(self, data_dir: str | Path, split: str) -> Path:
        if self.files is not None:
            return self.files.paths[split]
        return Path(data_dir) / self.name / f"{split}.{'txt' if self.is_ner else 'tsv'}"

    def read(self, data_dir: str | Path, split: str) -> list[PairExample] | list[TagExample]:
        """Read a split; test splits of GLUE tasks have their own layout (no labels)."""
        if self.files is not None:
            return self._read_user(split, self.labels or None)
        folder = Path(data_dir) / self.name
        if not folder.is_dir():
            raise MiniDiscError(
                f"{folder}: task folder not found (put the {self.name} files there; see README)"
            )
        return self.read_file(self.path(data_dir, split), split)

    def read_file(self, path: Path, split: str) -> list[PairExample] | list[TagExample]:
        """Read one of the task's files (in its original format) as split `split`."""
        if self.is_ner:
            return read_conll(path, self.labels)
        layout = self.test_layout if split.startswith("test") else self.train_layout
        return read_glue(path, layout, self.labels or None)

    def _read_user(self, split: str, labels: tuple[str, ...] | None
                   ) -> list[PairExample] | list[TagExample]:
        """A custom task's split; `labels` None accepts any label (reading the training file,
        whose labels become the task's). A test file may come without labels."""
        files, path = self.files, self.files.paths[split]
        labelled = split != "test"
        kind = file_type(path, self.is_ner, f"--{FILE_FLAGS[split]}")
        if kind == "columns":
            word = int(files.text_columns[0]) if files.text_columns else 0
            tag = int(files.label_column) if files.label_column is not None else -1
            return read_conll(path, labels, word, tag)
        if self.is_ner:
            return read_json_tags(path, files.text_columns[0], files.label_column, labels,
                                  labelled)
        return read_table(path, kind, files.text_columns, files.label_column, labels,
                          self.is_regression, labelled)


def _metric_names(metric: Callable[..., dict[str, float]], kind: str) -> tuple[str, ...]:
    """What a metric reports (declared with it: no scoring library is imported for it)."""
    return metric.names


def _glue(name: str, labels: tuple[str, ...], metric, selection: str, train: GlueLayout,
          test: GlueLayout, submission: str, hub_labels: tuple[str, ...] = (),
          hub_splits: dict[str, str] | None = None, on_hub: bool = True, **kw) -> Task:
    """A GLUE task; `hub_labels`, `hub_splits`: Hub.labels, Hub.splits of its hub copy."""
    kind = "classification" if labels else "regression"
    hub = Hub(((GLUE_HUB, name, None),), **({"splits": hub_splits} if hub_splits else {}),
              labels=hub_labels) if on_hub else None
    return Task(name=name, labels=labels, metric=metric, metric_names=_metric_names(metric, kind),
                selection_metric=selection, kind=kind, train_layout=train, test_layout=test,
                submission=kw.pop("submission_map", {"test": submission}), hub=hub, **kw)


BINARY = ("0", "1")
NLI2 = ("entailment", "not_entailment")
_pair_test = GlueLayout(text_a=1, text_b=2, label=None, guid=0)
_single_test = GlueLayout(text_a=1, text_b=None, label=None, guid=0)

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _glue("cola", BINARY, metrics.mcc, "mcc",
              GlueLayout(text_a=3, text_b=None, label=1, guid=None, header=False,
                         names=("source", "label", "author's mark", "sentence")),
              _single_test, "CoLA.tsv"),
        _glue("sst2", BINARY, metrics.acc, "acc",
              GlueLayout(text_a=0, text_b=None, label=1, guid=None), _single_test, "SST-2.tsv"),
        _glue("mrpc", BINARY, metrics.acc_and_f1, "acc_and_f1",
              GlueLayout(text_a=3, text_b=4, label=0, guid=None),
              GlueLayout(text_a=3, text_b=4, label=None, guid=0), "MRPC.tsv"),
        _glue("stsb", (), metrics.pearson_and_spearman, "corr",
              GlueLayout(text_a=7, text_b=8, label=-1, guid=0),
              GlueLayout(text_a=7, text_b=8, label=None, guid=0), "STS-B.tsv",
              score_range=(0.0, 5.0)),
        _glue("qqp", BINARY, metrics.acc_and_f1, "acc_and_f1",
              GlueLayout(text_a=3, text_b=4, label=5, guid=0), _pair_test, "QQP.tsv"),
        _glue("mnli", ("contradiction", "entailment", "neutral"), metrics.acc, "acc",
              GlueLayout(text_a=8, text_b=9, label=-1, guid=0),
              GlueLayout(text_a=8, text_b=9, label=None, guid=0), "",
              hub_labels=("entailment", "neutral", "contradiction"),
              hub_splits={"train": "train", "validation_matched": "dev_matched",
                          "validation_mismatched": "dev_mismatched",
                          "test_matched": "test_matched", "test_mismatched": "test_mismatched"},
              dev_splits=("dev_matched", "dev_mismatched"),
              test_splits=("test_matched", "test_mismatched"),
              submission_map={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}),
        _glue("qnli", NLI2, metrics.acc, "acc",
              GlueLayout(text_a=1, text_b=2, label=3, guid=0), _pair_test, "QNLI.tsv",
              hub_labels=NLI2),
        _glue("rte", NLI2, metrics.acc, "acc",
              GlueLayout(text_a=1, text_b=2, label=3, guid=0), _pair_test, "RTE.tsv",
              hub_labels=NLI2),
        _glue("wnli", BINARY, metrics.acc, "acc",
              GlueLayout(text_a=1, text_b=2, label=3, guid=0), _pair_test, "WNLI.tsv"),
        # The offline demo task (datasets/make_demo.py writes it in SST-2's format).
        _glue("demo", BINARY, metrics.acc, "acc",
              GlueLayout(text_a=0, text_b=None, label=1, guid=None), _single_test, "DEMO.tsv",
              on_hub=False),
        Task(name="conll", labels=CONLL_TAGS, metric=metrics.ner_f1,
             metric_names=_metric_names(metrics.ner_f1, "tagging"), selection_metric="f1",
             kind="tagging", hub=CONLL_HUB),
    )
}

# How a custom task of each --task_type is scored: (metric, default --selection_metric).
CUSTOM_SCORING: dict[str, tuple[Callable[..., dict[str, float]], str]] = {
    "classification": (metrics.acc_and_macro_f1, "acc"),
    "regression": (metrics.pearson_and_spearman, "corr"),  # the mean of the two, as STS-B
    "tagging": (metrics.ner_f1, "f1"),
}


def custom_task(kind: str, labels: tuple[str, ...] = (), files: UserFiles | None = None) -> Task:
    """A user's task of one --task_type: scored by CUSTOM_SCORING, read from `files` (None:
    predict only, labels from a checkpoint)."""
    metric, selection = CUSTOM_SCORING[kind]
    return Task(name=CUSTOM, labels=labels, metric=metric,
                metric_names=_metric_names(metric, kind), selection_metric=selection, kind=kind,
                test_splits=("test",) if files is not None and "test" in files.paths else (),
                files=files)


def resolve_task(args: Any, read: bool = True) -> Task:
    """The task the flags name (`args`: a run's DataConfig, or another tool's namespace with
    the same attribute names): `args.task_name` (checked and lower-cased by
    RunConfig.resolve) and, for `custom`, the file and column flags; `fetch_glue`
    (glue/<name>) fetches a missing <data_dir>/<name>/ with HF datasets. One without the
    custom flags (another tool's) works for registered tasks.

    read=False opens no file: a custom task's labels stay empty (its kind, metric and
    selection metric are known) and nothing is fetched; RunConfig.resolve uses that.
    """
    if args.task_name != CUSTOM:
        task = TASKS[args.task_name]
        if read and getattr(args, "fetch_glue", False):
            _fetch(task.name, Path(args.data_dir))
        return task
    columns = tuple(c.strip() for c in (args.text_columns or "").split(",") if c.strip())
    files = UserFiles({split: Path(getattr(args, flag)) for split, flag in FILE_FLAGS.items()
                       if getattr(args, flag) is not None}, columns, args.label_column)
    task = custom_task(args.task_type or "classification", files=files)
    if not read or task.is_regression:
        return task
    return _with_training_labels(task)


def _with_training_labels(task: Task) -> Task:
    """Class labels (or tags) as the training file has them: text, sorted, so the same file
    always gives the same label ids. Tagging always has 'O' (untagged words get it)."""
    found: set[str] = set()
    for e in task._read_user("train", None):
        found.update(e.tags if isinstance(e, TagExample) else [e.label])
    if task.is_ner:
        found.add("O")
    path = task.files.paths["train"]
    if len(found) < 2:
        raise MiniDiscError(f"--train_file {path}: only one label ({', '.join(found)}): "
                            f"{task.kind} needs at least two")
    labels = tuple(sorted(found))
    logger.info("%d labels from %s: %s", len(labels), path, ", ".join(labels))
    return replace(task, labels=labels)


def _fetch(name: str, data_dir: Path) -> None:
    """--task_name glue/<name>: write <data_dir>/<name>/ from the hub once; later runs (and
    --task_name <name>) read that copy offline."""
    if (data_dir / name).is_dir():
        logger.info("glue/%s: reading %s (fetched before; remove it to fetch again)", name,
                    data_dir / name)
        return
    try:
        download(TASKS[name], data_dir)
    except MiniDiscError as e:
        raise MiniDiscError(f"--task_name glue/{name}: {e}") from None
