"""CPU latency of a prunable teacher and its narrowed students, in PyTorch and from the exported
ONNX file, for every model family, at 1 thread and at all cores.

    python -m benchmarks.latency [PRUNABLE_CHECKPOINT] [--families bert roberta enct5]
        [--sparsity 50 90] [--batch 1 32] [--length 128] [--repeats 10] [--threads 1 N]
        [--json OUT]

For every family, thread count and batch shape, prints milliseconds per batch and the speedup
over that family's full teacher in each runtime. The checkpoint (if given) stands for its own
family; every other family listed is a model of the MiniLM's shape (6 layers, 384 hidden,
12 heads, 1536 FFN neurons) with random weights and random importances built in code, which
is enough for latency (it depends on the shapes, not the weights) but says nothing of quality.
Virtual narrowing (the sandwich's `sparsify`) computes with weight slices; `densify` also drops
the unused weights and is what `minidisc.export` ships. The full and densified models are
exported by `minidisc.export` itself (onnxruntime vs PyTorch check included) to .onnx files,
and each is timed through a fresh onnxruntime session read from its file on disk, with as
many intra-op threads as PyTorch uses. All variants and both runtimes are timed interleaved
in one loop, so machine noise hits them alike; the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minidisc.commands import configure_logging
from minidisc.compression.sparsity_map import make_prunable, random_importance
from minidisc.errors import MiniDiscError, exit_code
from minidisc.export import export, numpy_inputs, ort_session, random_batch
from minidisc.models import check_checkpoint, checkpoint_family
from minidisc.models.families import ENCT5, FAMILIES, ROBERTA, Family, count_params

RUNTIMES = ("torch", "onnxruntime")
# The shipped MiniLM's shape, for the families without a checkpoint here.
SHAPE = dict(layers=6, hidden=384, heads=12, ffn=1536)


def interleaved_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds per call, each call warmed up once, then all timed round-robin."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def random_model(family: Family, seed: int = 0) -> nn.Module:
    """A prunable sentence classifier of the MiniLM's shape with random weights and a sparsity
    map from random importances (timing depends on the widths, not on the values)."""
    torch.manual_seed(seed)
    s = SHAPE
    if family is ENCT5:
        config = family.config_class(vocab_size=32128, d_model=s["hidden"],
                                     d_kv=s["hidden"] // s["heads"], d_ff=s["ffn"],
                                     num_layers=s["layers"], num_heads=s["heads"], num_labels=2)
    else:
        extra = (dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                      pad_token_id=1) if family is ROBERTA else dict(vocab_size=30522))
        config = family.config_class(hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                                     num_attention_heads=s["heads"],
                                     intermediate_size=s["ffn"], num_labels=2, **extra)
    model = family.task_classes["cls"](config).eval()
    make_prunable(model, *random_importance(model, seed))
    return model


def load_prunable(checkpoint: str) -> tuple[Family, nn.Module]:
    path = check_checkpoint(checkpoint, "checkpoint")
    family = checkpoint_family(path, "checkpoint")
    model = family.task_classes["cls"].from_pretrained(path, dtype=torch.float32).eval()
    if not getattr(model.config, "sparsity_map", None):
        raise MiniDiscError(f"checkpoint {path}: no sparsity_map (run --mode sparsify first)")
    return family, model


def variants(full: nn.Module, levels: Sequence[float]) -> dict[str, nn.Module]:
    """The full teacher, then per sparsity its virtually narrowed and densified copies."""
    models = {"full": full}
    for s in levels:
        virtual = copy.deepcopy(full)
        virtual.sparsify(s)
        dense = copy.deepcopy(virtual)
        dense.densify()
        models[f"{s:g}% virtual"] = virtual
        models[f"{s:g}% densified"] = dense
    return models


def export_files(models: dict[str, nn.Module], folder: Path, length: int) -> dict[str, Path]:
    """The full and densified models through the exporter's own path: saved as checkpoints,
    then `minidisc.export.export` (which checks onnxruntime against PyTorch) to .onnx files."""
    files = {}
    for i, (name, model) in enumerate((n, m) for n, m in models.items() if "virtual" not in n):
        model.save_pretrained(folder / f"ckpt{i}")
        files[name] = folder / f"{i}.onnx"
        export(folder / f"ckpt{i}", files[name], max_length=length)
    return files


def _calls(models: dict[str, nn.Module], sessions: dict[str, Any],
           batch: dict[str, torch.Tensor]) -> dict[str, Callable[[], object]]:
    """One forward per model and runtime, named "<runtime> <model>"."""
    feed = numpy_inputs(batch)
    calls: dict[str, Callable[[], object]] = {}
    for name, m in models.items():
        calls[f"torch {name}"] = lambda m=m: m(**batch)
        if name in sessions:
            calls[f"onnxruntime {name}"] = lambda s=sessions[name]: s.run(["logits"], feed)
    return calls


def _table(models: dict[str, nn.Module], ms: dict[str, float]) -> None:
    print(f"{'model':>16} {'encoder params':>15}"
          + "".join(f" {rt + ' ms':>15} {'speedup':>8}" for rt in RUNTIMES))
    for name, m in models.items():
        row = f"{name:>16} {count_params(m)['encoder']:15,d}"
        for rt in RUNTIMES:
            v = ms.get(f"{rt} {name}")
            row += (f" {v:15.1f} {ms[f'{rt} full'] / v:7.2f}x" if v else f" {'–':>15} {'–':>8}")
        print(row)


def benchmark(a: argparse.Namespace) -> dict[str, Any]:
    given = load_prunable(a.checkpoint) if a.checkpoint else None
    names = a.families or [f.name for f in FAMILIES]
    unknown = sorted(set(names) - {f.name for f in FAMILIES})
    if unknown:
        raise MiniDiscError(f"--families {' '.join(unknown)}: unknown (choose from "
                            f"{', '.join(f.name for f in FAMILIES)})")
    if given is not None and given[0].name not in names:
        names = [given[0].name, *names]
    if any(t < 1 for t in a.threads):
        raise MiniDiscError(f"--threads {a.threads}: at least 1 each")
    print(f"torch {torch.__version__}, onnxruntime {version('onnxruntime')}, "
          f"{os.cpu_count()} cores; speedup = full ms / model ms")
    record: dict[str, Any] = {"torch": torch.__version__,
                              "onnxruntime": version("onnxruntime"), "results": []}
    for family in (f for f in FAMILIES if f.name in names):
        if given is not None and given[0] is family:
            full, origin = given[1], a.checkpoint
        else:
            full, origin = random_model(family), "random weights, MiniLM shape, built in code"
        models = variants(full, a.sparsity)
        length = min(max(a.length), getattr(full.config, "max_position_embeddings", 10**6))
        with tempfile.TemporaryDirectory() as tmp:
            files = export_files(models, Path(tmp), length)
            for threads in a.threads:
                torch.set_num_threads(threads)
                # a fresh session per file; no spinning: idle onnxruntime threads would steal
                # PyTorch's turn at the cores
                sessions = {n: ort_session(p, threads, spin=False) for n, p in files.items()}
                for b in a.batch:
                    for t in a.length:
                        batch = random_batch(full.config, b, t)
                        with torch.inference_mode():
                            ms = interleaved_ms(_calls(models, sessions, batch), a.repeats)
                        print(f"\n{family.label} ({origin}), {threads} thread(s), "
                              f"batch {b} x {t} tokens")
                        _table(models, ms)
                        record["results"].append({"family": family.name, "model": origin,
                                                  "threads": threads, "batch": b, "length": t,
                                                  "ms": ms})
    if a.json:
        a.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?",
                   help="a prunable checkpoint (config with a sparsity_map), for its family")
    p.add_argument("--families", nargs="+", help="families to time (default: all; those "
                   "without the checkpoint get random MiniLM-shaped models)")
    p.add_argument("--sparsity", type=float, nargs="+", default=[50, 90])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--length", type=int, nargs="+", default=[128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                   help="intra-op threads of both runtimes, each timed in turn "
                   "(default: 1 and one per core)")
    p.add_argument("--json", type=Path, help="also write the timings to this file")
    a = p.parse_args(argv)
    configure_logging()
    return exit_code(lambda: benchmark(a))


if __name__ == "__main__":
    sys.exit(main())
