"""The task registry: for each task, its files, column layout, labels, metric and defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minidisc import metrics
from minidisc.data.examples import PairExample, TagExample
from minidisc.data.readers import GlueLayout, read_conll, read_glue
from minidisc.errors import MiniDiscError

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]  # empty for regression; the tag set for NER
    metric: Callable[..., dict[str, float]]
    metric_names: tuple[str, ...]
    selection_metric: str
    train_layout: GlueLayout | None = None  # None: CoNLL format
    test_layout: GlueLayout | None = None
    dev_splits: tuple[str, ...] = ("dev",)  # the first one selects checkpoints
    test_splits: tuple[str, ...] = ("test",)
    submission: dict[str, str] = field(default_factory=dict)  # test split -> GLUE file name

    @property
    def is_ner(self) -> bool:
        return self.train_layout is None

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    def path(self, data_dir: str | Path, split: str) -> Path:
        return Path(data_dir) / self.name / f"{split}.{'txt' if self.is_ner else 'tsv'}"

    def read(self, data_dir: str | Path, split: str) -> list[PairExample] | list[TagExample]:
        """Read a split; test splits of GLUE tasks have their own layout (no labels)."""
        folder = Path(data_dir) / self.name
        if not folder.is_dir():
            raise MiniDiscError(
                f"{folder}: task folder not found (put the {self.name} files there; see README)"
            )
        path = self.path(data_dir, split)
        if self.is_ner:
            return read_conll(path, self.labels)
        layout = self.test_layout if split.startswith("test") else self.train_layout
        return read_glue(path, layout, self.labels or None)


def _glue(name: str, labels: tuple[str, ...], metric, selection: str, train: GlueLayout,
          test: GlueLayout, submission: str, **kw) -> Task:
    names = tuple(metric([0, 1], [0, 1]).keys()) if labels else ("pearson", "spearman", "corr")
    return Task(name=name, labels=labels, metric=metric, metric_names=names,
                selection_metric=selection, train_layout=train, test_layout=test,
                submission=kw.pop("submission_map", {"test": submission}), **kw)


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
              GlueLayout(text_a=7, text_b=8, label=None, guid=0), "STS-B.tsv"),
        _glue("qqp", BINARY, metrics.acc_and_f1, "acc_and_f1",
              GlueLayout(text_a=3, text_b=4, label=5, guid=0), _pair_test, "QQP.tsv"),
        _glue("mnli", ("contradiction", "entailment", "neutral"), metrics.acc, "acc",
              GlueLayout(text_a=8, text_b=9, label=-1, guid=0),
              GlueLayout(text_a=8, text_b=9, label=None, guid=0), "",
              dev_splits=("dev_matched", "dev_mismatched"),
              test_splits=("test_matched", "test_mismatched"),
              submission_map={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}),
        _glue("qnli", NLI2, metrics.acc, "acc",
              GlueLayout(text_a=1, text_b=2, label=3, guid=0), _pair_test, "QNLI.tsv"),
        _glue("rte", NLI2, metrics.acc, "acc",
              GlueLayout(text_a=1, text_b=2, label=3, guid=0), _pair_test, "RTE.tsv"),
        _glue("wnli", BINARY, metrics.acc, "acc",
              GlueLayout(text_a=1, text_b=2, label=3, guid=0), _pair_test, "WNLI.tsv"),
        # The offline demo task (datasets/make_demo.py writes it in SST-2's format).
        _glue("demo", BINARY, metrics.acc, "acc",
              GlueLayout(text_a=0, text_b=None, label=1, guid=None), _single_test, "DEMO.tsv"),
        Task(name="conll", labels=CONLL_TAGS, metric=metrics.ner_f1,
             metric_names=("f1", "precision", "recall"), selection_metric="f1"),
    )
}
