"""CPU latency of a prunable teacher and its narrowed students, in PyTorch and onnxruntime.

    python -m benchmarks.latency PRUNABLE_CHECKPOINT [--sparsity 50 90] [--batch 1 32]
                                 [--length 128] [--repeats 10] [--threads N]

For every batch shape, prints milliseconds per batch and the speedup over the full teacher in
each runtime. All variants and both runtimes are timed interleaved in one loop, so machine noise
hits them alike; the median of the repeats is reported. Virtual narrowing (the sandwich's
`sparsify`) computes with weight slices, so it already saves the FLOPs in PyTorch; `densify`
also drops the unused weights (small checkpoints and memory) and is what `minidisc.export`
ships, so only the full and densified models run in onnxruntime, with as many intra-op threads
as PyTorch uses.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from minidisc.errors import exit_code
from minidisc.export import export_onnx, numpy_inputs, ort_session, random_batch
from minidisc.main import configure_logging
from minidisc.models import check_checkpoint
from minidisc.models.sparse_bert import SparseBertForSequenceClassification, count_params

RUNTIMES = ("torch", "onnxruntime")


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


def variants(checkpoint: str, levels: list[float]) -> dict[str, torch.nn.Module]:
    """The full teacher, then per sparsity its virtually narrowed and densified copies."""
    full = SparseBertForSequenceClassification.from_pretrained(
        check_checkpoint(checkpoint, "checkpoint"), dtype=torch.float32).eval()
    models = {"full": full}
    for s in levels:
        virtual = copy.deepcopy(full)
        virtual.sparsify(s)
        dense = copy.deepcopy(virtual)
        dense.densify()
        models[f"{s:g}% virtual"] = virtual
        models[f"{s:g}% densified"] = dense
    return models


def benchmark(a: argparse.Namespace) -> None:
    torch.manual_seed(0)
    models = variants(a.checkpoint, a.sparsity)
    config = models["full"].config
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    sessions: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:  # a session keeps its graph in memory
        for i, name in enumerate(n for n in models if "virtual" not in n):
            path = Path(tmp) / f"{i}.onnx"
            export_onnx(models[name], path, min(max(a.length), config.max_position_embeddings))
            # no spinning: idle onnxruntime threads would steal PyTorch's turn at the cores
            sessions[name] = ort_session(path, threads, spin=False)
    print(f"{threads} threads, torch {torch.__version__}, "
          f"onnxruntime {version('onnxruntime')}; speedup = full ms / model ms")
    for b in a.batch:
        for t in a.length:
            with torch.inference_mode():
                ms = interleaved_ms(_calls(models, sessions, random_batch(config, b, t)),
                                    a.repeats)
            _table(models, ms, b, t)


def _calls(models: dict[str, torch.nn.Module], sessions: dict[str, Any],
           batch: dict[str, torch.Tensor]) -> dict[str, Callable[[], object]]:
    """One forward per model and runtime, named "<runtime> <model>"."""
    feed = numpy_inputs(batch)
    calls: dict[str, Callable[[], object]] = {}
    for name, m in models.items():
        calls[f"torch {name}"] = lambda m=m: m(**batch)
        if name in sessions:
            calls[f"onnxruntime {name}"] = lambda s=sessions[name]: s.run(["logits"], feed)
    return calls


def _table(models: dict[str, torch.nn.Module], ms: dict[str, float], b: int, t: int) -> None:
    print(f"\nbatch {b} x {t} tokens")
    print(f"{'model':>16} {'encoder params':>15}"
          + "".join(f" {rt + ' ms':>15} {'speedup':>8}" for rt in RUNTIMES))
    for name, m in models.items():
        row = f"{name:>16} {count_params(m)['encoder']:15,d}"
        for rt in RUNTIMES:
            v = ms.get(f"{rt} {name}")
            row += (f" {v:15.1f} {ms[f'{rt} full'] / v:7.2f}x" if v else f" {'–':>15} {'–':>8}")
        print(row)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a prunable checkpoint (config with a sparsity_map)")
    p.add_argument("--sparsity", type=float, nargs="+", default=[50, 90])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--length", type=int, nargs="+", default=[128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, help="intra-op threads of both runtimes "
                   "(default: PyTorch's, one per core; 1 is steadier on a shared machine)")
    a = p.parse_args(argv)
    configure_logging()
    return exit_code(lambda: benchmark(a))


if __name__ == "__main__":
    sys.exit(main())
