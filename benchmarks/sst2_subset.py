"""The SST-2 study's data (docs/study.md): a fixed training subset, a selection split carved
from the rest of train, and the official dev for reporting, as GLUE-style tsv files outside
the repository.

    python -m benchmarks.sst2_subset --src ../shared/data/sst2 --out /tmp/sst2_study

SST-2's train holds every phrase of each parse tree, so a training phrase is often a span of
another row. The selection rows are maximal rows (no other train row contains them: whole
sentences), and every training candidate that is a span of a selection row is dropped, so no
selection sentence is seen in training, even in part. Written, with a header each:
train.tsv and selection.tsv (sentence, label) and dev.tsv (the official dev, labelled). Runs
read them as `--task_name custom --train_file train.tsv --validation_file selection.tsv
--test_file dev.tsv --do_test`: checkpoints, early stopping and the TA choice are decided on
the selection split; the official dev is only reported (as the `test` split).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from minidisc.errors import MiniDiscError, exit_code

MIN_SELECTION_TOKENS = 5  # a selection row is a sentence, not a two-word fragment


def read_rows(path: Path) -> list[tuple[str, str]]:
    """(sentence, label) rows of a GLUE SST-2 tsv, whitespace normalised."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise MiniDiscError(f"{path}: cannot read ({e.strerror})") from None
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        if len(cols) < 2 or cols[1].strip() not in ("0", "1"):
            raise MiniDiscError(f"{path}:{lineno}: expected 'sentence<TAB>0|1'")
        rows.append((" ".join(cols[0].split()), cols[1].strip()))
    return rows


def split_rows(rows: list[tuple[str, str]], n_train: int, n_selection: int,
               seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
    """The selection rows, the training rows, and how many candidates were dropped for
    overlapping a selection row."""
    rng = random.Random(seed)
    whole = "\n".join(f" {s} " for s, _ in rows)  # " span " in " row " = a token span
    long = [i for i, (s, _) in enumerate(rows) if len(s.split()) >= MIN_SELECTION_TOKENS]
    rng.shuffle(long)
    selection: list[int] = []
    for i in long:
        if len(selection) == n_selection:
            break
        if whole.count(f" {rows[i][0]} ") == 1:  # only itself: a maximal row
            selection.append(i)
    if len(selection) < n_selection:
        raise MiniDiscError(f"--n_selection {n_selection}: only {len(selection)} maximal rows")
    chosen = set(selection)
    sel_text = "\n".join(f" {rows[i][0]} " for i in selection)
    rest = [i for i in range(len(rows)) if i not in chosen]
    candidates = [i for i in rest if f" {rows[i][0]} " not in sel_text]
    if len(candidates) < n_train:
        raise MiniDiscError(f"--n_train {n_train}: only {len(candidates)} candidates")
    train = rng.sample(candidates, n_train)
    return [rows[i] for i in selection], [rows[i] for i in train], len(rest) - len(candidates)


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows),
                   encoding="utf-8")
    tmp.replace(path)


def build(src: Path, out: Path, n_train: int, n_selection: int, seed: int) -> dict:
    rows, dev = read_rows(src / "train.tsv"), read_rows(src / "dev.tsv")
    selection, train, dropped = split_rows(rows, n_train, n_selection, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("selection", selection), ("dev", dev)):
        _write(out / f"{name}.tsv", part)
    info = {"src": str(src.resolve()), "seed": seed, "train": len(train),
            "selection": len(selection), "dev": len(dev),
            "dropped_for_overlap": dropped,
            **{f"{name}_positive": sum(y == "1" for _, y in part) / len(part)
               for name, part in (("train", train), ("selection", selection), ("dev", dev))}}
    (out / "subset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sst2_subset",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path("../shared/data/sst2"),
                    help="GLUE SST-2 folder (train.tsv, dev.tsv)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (outside the repo)")
    ap.add_argument("--n_train", type=int, default=8000)
    ap.add_argument("--n_selection", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=22)
    args = ap.parse_args(argv)

    def run() -> dict:
        info = build(args.src, args.out, args.n_train, args.n_selection, args.seed)
        print(json.dumps(info, indent=2))
        return info

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
