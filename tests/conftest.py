"""Shared fixtures: a tiny BERT checkpoint and tokenizer built in code, tiny task folders."""

from __future__ import annotations

import random
import shutil
import string
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

ROOT = Path(__file__).resolve().parents[1]  # the repository
POSITIVE = ["good", "great", "nice", "fine", "happy", "superb"]
NEGATIVE = ["bad", "awful", "poor", "sad", "terrible", "dull"]
FILLER = ["the", "movie", "plot", "was", "and", "very", "a", "film", "cast", "is"]
NER_WORDS = ["john", "paris", "acme", "visited", "works", "at", "in", "mary", "london", "corp"]


def tiny_config(**kw) -> BertConfig:
    base = dict(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return BertConfig(**base)


def make_tiny_bert(folder: Path, layers: int = 2) -> Path:
    """A random tiny BERT + WordPiece tokenizer that covers the fixture words."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(set(POSITIVE + NEGATIVE + FILLER + NER_WORDS))
    vocab += list(string.ascii_lowercase + string.digits + ".,!?'\"-")
    vocab += ["##" + c for c in string.ascii_lowercase]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(tiny_config(vocab_size=len(vocab), num_hidden_layers=layers)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def save_head_teacher(tiny_bert: Path, folder: Path, prunable: bool = False) -> Path:
    """`tiny_bert` with a 2-label task head (seed 0) saved with its tokenizer; `prunable`
    adds a sparsity map from random importance. Any fixed teacher will do for the tests that
    use it: trained or not is not the point."""
    from minidisc.compression.sparsity_map import make_prunable, random_importance
    from minidisc.models.sparse_bert import SparseBertForSequenceClassification

    torch.manual_seed(0)
    model = SparseBertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    if prunable:
        make_prunable(model, *random_importance(model, 1))
    model.config.architectures = ["SparseBertForSequenceClassification"]
    model.save_pretrained(folder)
    for f in tiny_bert.iterdir():
        if "token" in f.name or f.name == "vocab.txt":
            shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="session")
def head_teacher(tiny_bert, tmp_path_factory) -> Path:
    """A tiny BERT with a task head (sparsify needs one)."""
    return save_head_teacher(tiny_bert, tmp_path_factory.mktemp("head_teacher") / "teacher")


def sentiment_rows(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_sst2_task(data_dir: Path, name: str = "sst2", n_train: int = 96,
                    n_dev: int = 32) -> Path:
    """A trivially learnable SST-2-format task (the sentiment word decides the label)."""
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        lines = ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in sentiment_rows(n, seed)]
        (folder / f"{split}.tsv").write_text("\ufeff" + "\n".join(lines) + "\n")
    test = ["index\tsentence"] + [f"{i}\t{s}" for i, (s, _) in enumerate(sentiment_rows(8, 3))]
    (folder / "test.tsv").write_text("\n".join(test) + "\n")
    return data_dir


MNLI_LABELS = ["contradiction", "entailment", "neutral"]
MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
               "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")


def mnli_rows(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    words = FILLER + POSITIVE + NEGATIVE
    return [(" ".join(rng.sample(words, 4)), " ".join(rng.sample(words, 3)),
             rng.choice(MNLI_LABELS)) for _ in range(n)]


def write_mnli_task(data_dir: Path, n: int = 24) -> Path:
    """A tiny MNLI-format task: real label names (not learnable, not meant to be)."""
    folder = data_dir / "mnli"
    folder.mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 1), ("dev_matched", 2), ("dev_mismatched", 3)):
        lines = [MNLI_HEADER] + [f"{i}\t0\t0\tfiction\t-\t-\t-\t-\t{a}\t{b}\t{y}\t{y}"
                                 for i, (a, b, y) in enumerate(mnli_rows(n, seed))]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return data_dir


def write_conll_task(data_dir: Path) -> Path:
    folder = data_dir / "conll"
    folder.mkdir(parents=True, exist_ok=True)
    sents = [
        [("john", "B-PER"), ("visited", "O"), ("paris", "B-LOC")],
        [("mary", "B-PER"), ("works", "O"), ("at", "O"), ("acme", "B-ORG"), ("corp", "I-ORG")],
        [("the", "O"), ("film", "O"), ("is", "O"), ("in", "O"), ("london", "B-LOC")],
    ]
    lines = ["-DOCSTART- -X- -X- O", ""]
    for s in sents * 4:
        lines += [f"{w} NN B-NP {t}" for w, t in s] + [""]
    for split in ("train", "dev", "test"):
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return data_dir


@pytest.fixture
def sst2_dir(tmp_path) -> Path:
    return write_sst2_task(tmp_path / "data")


@pytest.fixture
def conll_dir(tmp_path) -> Path:
    return write_conll_task(tmp_path / "data")


FAST_FLAGS = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16",
              "--learning_rate", "3e-3", "--log_interval", "30", "--use_cpu",
              "--warmup_proportion", "0"]


def run_mode(mode: str, data: Path, out: Path, teacher: Path, *extra: str,
             task: str = "sst2") -> dict:
    """One run.py call on a fixture task: 1 epoch at the fast flags, `extra` overriding."""
    from minidisc.main import execute

    return execute(["--mode", mode, "--task_name", task, "--data_dir", str(data),
                    "--output_dir", str(out), "--teacher_model_path", str(teacher),
                    "--num_train_epochs", "1", *FAST_FLAGS, *extra])


@pytest.fixture(scope="session")
def fake_python(tmp_path_factory) -> Path:
    """A folder whose `python` writes its argv as JSON to $ARGV_OUT instead of running: put
    first on PATH, a generated script's exact run.py command line without running a model."""
    folder = tmp_path_factory.mktemp("fakebin")
    exe = folder / "python"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['ARGV_OUT'], 'w') as f:\n"
        "    json.dump(sys.argv[1:], f)\n"
        "with open(os.environ['ARGV_OUT'] + '.cwd', 'w') as f:\n"
        "    f.write(os.getcwd())\n"
    )
    exe.chmod(0o755)
    return folder
