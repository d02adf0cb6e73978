"""Predict with a finetuned or compressed checkpoint, writing predictions beside the input rows.

    python -m minidisc.predict MODEL --input FILE [--task_name T] [--output OUT]
        [--text_columns A[,B]] [--per_device_eval_batch_size N] [--max_length L] [--use_cpu]

MODEL is a checkpoint folder or a run folder (its final checkpoint). --task_name defaults to
the task the checkpoint was trained on. Inputs, by extension and task (labels are ignored):
- .tsv of a GLUE task: a train/dev or test file in the task's own layout; any other .tsv/.csv
  names its columns in a header row: the text columns are --text_columns, else `text`
  (and `text_pair` for sentence-pair tasks);
- .jsonl/.json: one JSON object per line, texts in the same fields; for tagging a list of
  words in --text_columns (default `words`);
- tagging, any other extension: CoNLL-style columns (word first; more columns are kept).
The output (default: INPUT with `.predictions` before its extension) repeats every input row
with the prediction beside it: the label and each label's probability (classification), the
score (regression) or one tag per word (tagging); TSV/CSV stay TSV/CSV, JSON Lines gain fields,
CoNLL lines gain a last column. It is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minidisc.commands import ArgumentParser, configure_logging
from minidisc.data import pipeline, readers
from minidisc.data.examples import PairExample, TagExample
from minidisc.data.tasks import CUSTOM, TASKS, Task, custom_task
from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import write_text
from minidisc.models import (
    check_checkpoint,
    checkpoint_family,
    load_model,
    read_config,
    resolve_max_length,
)
from minidisc.models.families import head_kind
from minidisc.registry import resolve_checkpoint
from minidisc.training import evaluate as evaluation
from minidisc.training.evaluate import as_labels
from minidisc.training.runtime import Runtime, setup

logger = logging.getLogger("minidisc.predict")

FLAG = "MODEL"  # how errors name the checkpoint argument
Fields = dict[str, Any]  # one prediction: "prediction" + "probabilities", "score" or "tags"


@dataclass
class InputFile:
    """Examples read for prediction, and how to write the file back with predictions beside
    its rows (`write` gets one Fields per example, in file order, and returns the text)."""

    examples: list[PairExample] | list[TagExample]
    write: Callable[[list[Fields]], str]


def task_for(name: str | None, config: dict[str, Any]) -> Task:
    """The task whose labels and file layouts predictions use: --task_name, else the one the
    checkpoint was trained on (the one place another kind of task would plug in)."""
    trained = config.get("task_name")
    name = name or trained
    if not name:
        raise MiniDiscError("--task_name: required (the checkpoint does not record its task)")
    if name == CUSTOM:
        return _custom_task(config)
    if name not in TASKS:
        raise MiniDiscError(f"--task_name {name}: unknown task (known: {', '.join(TASKS)})")
    if trained and trained != name:
        logger.warning("the checkpoint was trained on %s, predicting as %s", trained, name)
    return TASKS[name]


def _custom_task(config: dict[str, Any]) -> Task:
    """A user's task as its checkpoint records it: the head gives the kind, id2label the
    labels (no training file is needed to predict)."""
    id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    if head_kind(config.get("architectures")) == "ner":
        kind = "tagging"
    elif len(id2label) <= 1:
        kind = "regression"
    else:
        kind = "classification"
    labels = () if kind == "regression" else tuple(id2label[i] for i in sorted(id2label))
    return custom_task(kind, labels)


def _table_columns(task: Task, text_columns: Sequence[str]) -> tuple[str, ...]:
    if text_columns:
        return tuple(text_columns)
    if task.is_ner:
        return ("words",)
    pair = task.train_layout is not None and task.train_layout.text_b is not None
    return ("text", "text_pair") if pair else ("text",)


def _flat(fields: Fields) -> Fields:
    """Columns of a TSV/CSV row: one per label probability."""
    probs = fields.get("probabilities", {})
    return {**{k: v for k, v in fields.items() if k != "probabilities"},
            **{f"prob_{label}": f"{p:.6f}" for label, p in probs.items()}}


def _read_glue_file(task: Task, path: Path) -> InputFile:
    """A GLUE file in the task's train/dev layout, else its test layout; rows echoed as read."""
    errors = []
    for layout in (task.train_layout, task.test_layout):
        try:
            examples = readers.read_glue(path, layout, task.labels or None)
            break
        except MiniDiscError as e:
            errors.append(str(e))
    else:
        train, test = errors
        detail = train if train == test else f"{train}; as a test file: {test}"
        raise MiniDiscError(f"not in {task.name}'s train/dev or test file layout ({detail}); "
                            "for other files name the text columns with --text_columns")
    lines = readers.open_lines(path)
    header, body = (lines[:1], lines[1:]) if layout.header else ([], lines)
    rows = [line for line in body if line.strip()]  # read_glue skips blank lines too

    def write(preds: list[Fields]) -> str:
        flat = [_flat(p) for p in preds]
        out = ["\t".join([*header, *flat[0]])] if header else []
        out += ["\t".join([row, *map(str, f.values())]) for row, f in zip(rows, flat)]
        return "\n".join(out) + "\n"

    return InputFile([PairExample(e.guid, e.text_a, e.text_b, None) for e in examples], write)


def _read_table(task: Task, path: Path, kind: str, columns: tuple[str, ...]) -> InputFile:
    """CSV/TSV with a header naming the columns, or JSON Lines; rows echoed with new fields."""
    if task.is_ner:
        examples = readers.read_json_tags(path, columns[0], None, None, labelled=False)
    else:
        examples = readers.read_table(path, kind, columns, None, None, False, labelled=False)
    rows = [(row, names) for _, row, names in readers.table_rows(path, kind)]

    def write(preds: list[Fields]) -> str:
        if task.is_ner:  # rows without words have no example: give them no tags
            it = iter(preds)
            preds = [next(it) if row[columns[0]] else {"tags": []} for row, _ in rows]
        if kind == "jsonl":
            return "".join(json.dumps({**row, **p}, ensure_ascii=False) + "\n"
                           for (row, _), p in zip(rows, preds))
        flat = [_flat(p) for p in preds]
        header = [*rows[0][1], *flat[0]]
        table = [header] + [[*row.values(), *f.values()] for (row, _), f in zip(rows, flat)]
        if kind == "tsv":
            return "".join("\t".join(map(str, r)) + "\n" for r in table)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(table)
        return buf.getvalue()

    return InputFile(examples, write)


def _read_conll(path: Path) -> InputFile:
    """CoNLL-style columns, tags optional: words from the first column, sentences between blank
    or -DOCSTART- lines; each word line gets its predicted tag as a last column."""
    lines = readers.open_lines(path)
    examples: list[TagExample] = []
    slots: list[tuple[int, int] | None] = []  # per line: (sentence, word), None for breaks
    words: list[str] = []
    for line in lines + [""]:
        cols = line.split()
        if cols and cols[0] != "-DOCSTART-":
            slots.append((len(examples), len(words)))
            words.append(cols[0])
            continue
        slots.append(None)
        if words:
            examples.append(TagExample(str(len(examples)), words, None))
            words = []
    if not examples:
        raise MiniDiscError(f"{path}: no sentences")

    def write(preds: list[Fields]) -> str:
        out = []
        for line, slot in zip(lines, slots):
            if slot is not None:
                sep = "\t" if "\t" in line else " "
                line = f"{line.rstrip()}{sep}{preds[slot[0]]['tags'][slot[1]]}"
            out.append(line)
        return "\n".join(out)

    return InputFile(examples, write)


def read_input(task: Task, path: Path, text_columns: Sequence[str]) -> InputFile:
    """The input file in whichever format its extension and the task say (see the module)."""
    if not path.is_file():
        raise MiniDiscError(f"--input {path}: file not found")
    kind = readers.file_type(path, task.is_ner, "--input")
    try:
        if kind == "columns":
            return _read_conll(path)
        if kind == "tsv" and not text_columns and task.train_layout is not None:
            try:
                return _read_glue_file(task, path)
            except MiniDiscError:
                header = readers.open_lines(path)[0].split("\t")
                if "text" not in (c.strip() for c in header):
                    raise
        return _read_table(task, path, kind, _table_columns(task, text_columns))
    except MiniDiscError as e:
        message = str(e)
        raise MiniDiscError(message if message.startswith(str(path))
                            else f"--input {path}: {message}") from None


@torch.inference_mode()
def predict_examples(model: nn.Module, split: pipeline.Split, task: Task, tok: Any,
                     batch_size: int, rt: Runtime) -> list[Fields]:
    """Per example, in input order: batches are sorted by length so little goes to padding."""
    loader = pipeline.eval_loader(split, task, tok, batch_size)
    ordered = evaluation.predict(model, loader, task, rt, probabilities=True, progress="predict")
    if task.is_ner:
        return [{"tags": tags} for tags in as_labels(task, split, ordered)]
    if task.is_regression:
        return [{"score": round(s, 6)} for s in as_labels(task, split, ordered)]
    labels = as_labels(task, split, [max(range(len(p)), key=p.__getitem__) for p in ordered])
    return [{"prediction": label,
             "probabilities": {name: round(q, 6) for name, q in zip(task.labels, p)}}
            for label, p in zip(labels, ordered)]


def default_output(path: Path) -> Path:
    """INPUT with `.predictions` before its extension: dev.tsv -> dev.predictions.tsv."""
    return path.with_name(f"{path.stem}.predictions{path.suffix}")


def predict(model_path: str | Path, input_path: str | Path, task_name: str | None = None,
            output: str | Path | None = None, text_columns: Sequence[str] = (),
            batch_size: int = 32, max_length: int | None = None, use_cpu: bool = False) -> Path:
    """Write the predictions file; every input is checked before the model is loaded."""
    if batch_size < 1:
        raise MiniDiscError(f"--per_device_eval_batch_size {batch_size}: must be at least 1")
    ckpt = check_checkpoint(resolve_checkpoint(model_path), FLAG)
    config = read_config(ckpt, FLAG)
    task = task_for(task_name, config)
    head = "TokenClassification" if task.is_ner else "SequenceClassification"
    archs = config.get("architectures") or []
    if head_kind(archs) != ("ner" if task.is_ner else "cls"):
        raise MiniDiscError(f"{FLAG} {ckpt}: a {archs[0] if archs else 'headless'} checkpoint, "
                            f"{task.name} needs a finetuned *For{head} model")
    src = Path(input_path)
    out = Path(output) if output is not None else default_output(src)
    if out.resolve() == src.resolve():
        raise MiniDiscError(f"--output {out}: the input file itself")
    if not out.parent.is_dir():
        raise MiniDiscError(f"--output {out}: folder {out.parent} not found")
    data = read_input(task, src, text_columns)
    tok = pipeline.load_tokenizer(ckpt, pre_split=task.is_ner)
    split = pipeline.encode_split(task, "input", data.examples, tok,
                                  resolve_max_length(tok, max_length))
    rt = setup(use_cpu, False)
    family = checkpoint_family(ckpt, FLAG)
    model = load_model(family.model_type("sparse", "ner" if task.is_ner else "cls"), ckpt, task,
                       FLAG)
    logger.info("predicting %d %s with %s on %s", len(split.examples),
                "sentences" if task.is_ner else "rows", ckpt, rt.device)
    text = data.write(predict_examples(model.to(rt.device), split, task, tok, batch_size, rt))
    try:
        write_text(out, text)
    except OSError as e:
        raise MiniDiscError(f"--output {out}: cannot write ({e.strerror})") from None
    logger.info("wrote %s", out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m minidisc.predict", description=__doc__.splitlines()[0])
    ap.add_argument("model", metavar="MODEL", help="checkpoint folder or run folder")
    ap.add_argument("--input", required=True, type=Path, help="the file to predict")
    ap.add_argument("--task_name", help="default: the task the checkpoint was trained on")
    ap.add_argument("--output", type=Path,
                    help="default: INPUT with .predictions before its extension")
    ap.add_argument("--text_columns", default="",
                    help="column(s) or JSON field(s) holding the text(s), comma-separated")
    ap.add_argument("--per_device_eval_batch_size", type=int, default=32)
    ap.add_argument("--max_length", type=int, default=None,
                    help="truncate inputs to this many tokens (default 128, or the model's "
                    "position table if smaller)")
    ap.add_argument("--use_cpu", action="store_true", help="run on the CPU even with CUDA")
    configure_logging()

    def run() -> None:
        args = ap.parse_args(argv)
        columns = [c.strip() for c in args.text_columns.split(",") if c.strip()]
        predict(args.model, args.input, args.task_name, args.output, columns,
                args.per_device_eval_batch_size, args.max_length, args.use_cpu)

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
