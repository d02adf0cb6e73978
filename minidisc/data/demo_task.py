"""Generate the offline `demo` task: synthetic movie-review sentences in GLUE SST-2 format.

The demo lets the whole pipeline run with no downloads. Sentences are built from the word
lists below (no text from any dataset). The sentiment is carried by words, with enough
structure that a bag of words is not quite enough: negation ("was not clever") flips a
clause, and in "X, but Y" / "although X, Y" sentences the last clause decides. About 3% of
labels are flipped, so a good model scores high on dev but not 100%.

    python datasets/make_demo.py [--out datasets/demo] [--seed 0]

Stdlib only and deterministic: the same seed writes byte-identical files, so the demo of an
installed package (no datasets/ folder) generates the same task the checkout commits.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

SIZES = {"train": 2000, "dev": 400, "test": 400}
NOISE = 0.03  # share of labels flipped

SUBJECTS = (
    "the movie", "this film", "the plot", "the acting", "the soundtrack", "the script",
    "the cast", "the ending", "the dialogue", "the camera work", "the pacing", "the story",
    "the lead actor", "the lead actress", "the opening scene", "the visual effects",
    "the sequel", "the costume design", "the editing", "the finale", "this documentary",
    "the main character", "the humor", "the score", "the villain", "the second act",
    "the romance", "the animation", "the premise", "the supporting cast",
)
POSITIVE = (
    "wonderful", "brilliant", "charming", "delightful", "moving", "gripping", "superb",
    "clever", "heartfelt", "stunning", "engaging", "hilarious", "memorable", "beautiful",
    "excellent", "fresh", "thoughtful", "powerful", "witty", "good", "great", "enjoyable",
    "touching", "inventive", "satisfying",
)
NEGATIVE = (
    "boring", "dull", "clumsy", "tedious", "awful", "bland", "forgettable", "messy",
    "predictable", "shallow", "weak", "terrible", "lifeless", "confusing", "annoying", "bad",
    "poor", "painful", "stale", "flat", "pointless", "lazy", "cheap", "sloppy", "exhausting",
)
VERBS = {  # (past tense, base form) of verbs that carry sentiment
    1: (("loved", "love"), ("enjoyed", "enjoy"), ("adored", "adore"), ("admired", "admire"),
        ("liked", "like"), ("appreciated", "appreciate")),
    0: (("hated", "hate"), ("disliked", "dislike"), ("despised", "despise"),
        ("resented", "resent"), ("regretted", "regret")),
}
ADVERBS = ("", "", "", "really ", "truly ", "quite ", "rather ", "surprisingly ",
           "genuinely ", "remarkably ", "somewhat ", "absolutely ", "very ")
BE = ("is", "was", "felt", "seemed")
BE_NOT = ("is not", "was not", "isn't", "wasn't", "never felt", "did not feel", "never seemed")
OPENERS = ("", "", "", "", "honestly, ", "to be fair, ", "in my opinion, ", "overall, ",
           "as expected, ", "for what it is worth, ", "after the first hour, ",
           "from where i sat, ", "i have to say ", "on the whole, ")
TAILS = ("", "", "", "", " from start to finish", " for most of its running time",
         " in the second half", " on the big screen", " by the end", " at times",
         " compared to the book", " for a sunday afternoon", " on a second viewing")
ASIDES = ("", "", "", "", "", " we watched it at the local theater last weekend.",
          " my brother picked it for movie night.", " it runs a little over two hours.",
          " the theater was half empty.", " i saw it with a few friends from work.",
          " it is based on a novel from the seventies.")


def _adj(rng: random.Random, label: int) -> str:
    return rng.choice(POSITIVE if label else NEGATIVE)


def _clause(rng: random.Random, label: int) -> str:
    """A clause with sentiment `label`; a quarter of them reach it through negation."""
    subj = rng.choice(SUBJECTS)
    kind = rng.random()
    if kind < 0.25:  # negation flips the adjective: "not dull" reads as positive
        return f"{subj} {rng.choice(BE_NOT)} {rng.choice(ADVERBS)}{_adj(rng, 1 - label)}"
    if kind < 0.40:
        past, base = rng.choice(VERBS[label]), rng.choice(VERBS[1 - label])
        if rng.random() < 0.7:
            return f"i {past[0]} {subj}"
        return f"i did not {base[1]} {subj}"
    if kind < 0.55:
        adj1, adj2 = _adj(rng, label), _adj(rng, label)
        return f"{subj} {rng.choice(BE)} {adj1} and {adj2}"
    return f"{subj} {rng.choice(BE)} {rng.choice(ADVERBS)}{_adj(rng, label)}"


def sentence(rng: random.Random, label: int) -> str:
    """One review sentence whose sentiment is `label` (before label noise)."""
    if rng.random() < 0.2:  # a contrast: the last clause decides
        first = _clause(rng, rng.choice((label, 1 - label, 1 - label)))
        last = _clause(rng, label)
        text = (f"{first}, but {last}" if rng.random() < 0.6 else f"although {first}, {last}")
    else:
        text = _clause(rng, label) + rng.choice(TAILS)
    return f"{rng.choice(OPENERS)}{text}.{rng.choice(ASIDES)}"


def generate(seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """All splits as (sentence, label) rows; no sentence appears twice across splits."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[tuple[str, int]]] = {}
    for split, n in SIZES.items():
        labels = [i % 2 for i in range(n)]  # exactly balanced before noise
        rng.shuffle(labels)
        rows = []
        for label in labels:
            text = sentence(rng, label)
            while text in seen:
                text = sentence(rng, label)
            seen.add(text)
            rows.append((text, 1 - label if rng.random() < NOISE else label))
        out[split] = rows
    return out


def write(out_dir: Path, splits: dict[str, list[tuple[str, int]]]) -> None:
    """SST-2 layout: `sentence\\tlabel` for train/dev, `index\\tsentence` for test."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        if split == "test":
            lines = ["index\tsentence", *(f"{i}\t{s}" for i, (s, _) in enumerate(rows))]
        else:
            lines = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in rows)]
        with open(out_dir / f"{split}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        positive = sum(y for _, y in rows) / len(rows)
        logger.info("%s: %d rows, %.1f%% positive", split, len(rows), 100 * positive)


def ensure(data_dir: Path, seed: int = 0) -> Path:
    """`data_dir/demo`, generated unless it is there; written beside and renamed into place, so
    a demo stopped halfway (or two demos at once) never leaves a half-written task."""
    folder = data_dir / "demo"
    if not folder.is_dir():
        tmp = data_dir / f".demo.tmp-{os.getpid()}"
        try:
            write(tmp, generate(seed))
            os.replace(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python datasets/make_demo.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("datasets") / "demo",
                   help="output folder (default: datasets/demo)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write(args.out, generate(args.seed))
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
