"""Shared fixtures and helpers: a tiny BERT (and T5) checkpoint and tokenizer built in code,
tiny task folders, torchrun, distillers. Test modules import helpers from here, never from one
another."""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
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


@pytest.fixture(scope="module")
def prunable_teacher(tiny_bert, tmp_path_factory) -> Path:
    """A tiny teacher with a head and a sparsity map, built directly (no finetune/sparsify
    runs: the comparison needs any fixed teacher, not a good one)."""
    return save_head_teacher(tiny_bert, tmp_path_factory.mktemp("ddp") / "teacher",
                             prunable=True)


def sparsify_argv(data: Path, out: Path, teacher: Path, *extra: str) -> list[str]:
    """A sparsify run's argv on the CPU (no FAST_FLAGS: sparsify does not train)."""
    return ["--mode", "sparsify", "--task_name", "sst2", "--data_dir", str(data),
            "--output_dir", str(out), "--teacher_model_path", str(teacher), "--use_cpu",
            "--per_device_eval_batch_size", "16", *extra]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    """The weights of a run folder's final model (results.json's final path)."""
    final = json.loads((run / "results.json").read_text())["final"]["path"]
    return load_file(run / final / "model.safetensors")


# --- torchrun ---------------------------------------------------------------------------

ENV = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


def torchrun(port: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), str(ROOT / "run.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# --- in-process distillation ------------------------------------------------------------


def prunable_pair():
    """A tiny prunable SparseBERT teacher (random importance, seed 0) and a student: the
    teacher's weights, slightly perturbed."""
    from minidisc.compression.sparsity_map import make_prunable, random_importance
    from minidisc.models.sparse_bert import SparseBertForSequenceClassification

    torch.manual_seed(0)
    teacher = SparseBertForSequenceClassification(tiny_config(num_labels=2)).eval()
    make_prunable(teacher, *random_importance(teacher, 1))
    student = SparseBertForSequenceClassification(teacher.config).eval()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return teacher, student


def make_distiller(task, teacher, model_type="sparsebert_cls", teacher_dtype="fp32"):
    """A Distiller on the CPU with the default temperature, as a run of `model_type` has."""
    from minidisc.compression.losses import objective_for
    from minidisc.modes.distill import Distiller

    return Distiller(teacher, objective_for(model_type), task, torch.device("cpu"),
                     teacher_dtype=teacher_dtype)


# --- T5 ---------------------------------------------------------------------------------


def t5_tokenizer():
    """A Unigram T5 tokenizer over the fixture words (pieces for anything else): `<pad>` 0,
    `</s>` 1, `<unk>` 2, as T5's."""
    from transformers import T5Tokenizer

    words = sorted(set(POSITIVE + NEGATIVE + FILLER + NER_WORDS))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    vocab += [(f"\u2581{w}", -1.0) for w in words]
    vocab += [(c, -5.0) for c in string.ascii_lowercase + string.digits + ".,!?'\"-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def make_tiny_t5(folder: Path) -> Path:
    """A random tiny (gated, flan-t5 like) T5ForConditionalGeneration with its tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = t5_tokenizer()
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                      num_decoder_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                      relative_attention_num_buckets=8, relative_attention_max_distance=16,
                      dropout_rate=0.0, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


# Removals per layer (of 4 heads, 64 neurons) of the t5_config encoder: ragged, one layer left
# with no heads and one with no neurons at 90.
SPARSITY_MAP = {"0": {"heads": [0, 0], "neurons": [0, 0]},
                "50": {"heads": [1, 2], "neurons": [20, 10]},
                "90": {"heads": [4, 3], "neurons": [30, 64]}}


def t5_config(ff: str = "relu", **kw):
    """A tiny T5Config (vocabulary 99, 2 layers of 4 heads and 64 neurons, 3 labels)."""
    from transformers import T5Config

    return T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                    feed_forward_proj=ff, relative_attention_num_buckets=8,
                    relative_attention_max_distance=16, num_labels=3, **kw)


def importance(seed: int, layers: int = 2) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random head and neuron importance for a t5_config encoder."""
    g = torch.Generator().manual_seed(seed)
    return ([torch.rand(4, generator=g) for _ in range(layers)],
            [torch.rand(64, generator=g) for _ in range(layers)])


def prunable(ff: str, cls: type | None = None):
    """A random (seed 0) t5_config model with SPARSITY_MAP, in eval mode; `cls` defaults to
    SparseEncT5ForSequenceClassification."""
    if cls is None:
        from minidisc.models.sparse_t5 import SparseEncT5ForSequenceClassification as cls
    torch.manual_seed(0)
    cfg = t5_config(ff)
    cfg.sparsity_map = SPARSITY_MAP
    return cls(cfg).eval()
