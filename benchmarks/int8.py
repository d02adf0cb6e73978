"""int8 against fp32, side by side in one run: the dev metric and the CPU latency of the fp32
teacher, the fp32 student and the int8 student (onnxruntime dynamic quantization, per tensor
and per channel).

    python -m benchmarks.int8 TEACHER STUDENT --data_dir D [--batch 1 32] [--length 128]
        [--repeats 10] [--threads N] [--json OUT]

TEACHER and STUDENT are checkpoint or run folders of the same task. Every graph is written by
`minidisc.export` (the int8 ones with `--quantize int8` and no metric bound, so a large drop is
measured, not refused) and scored through onnxruntime on the task's dev set. Latency: each
.onnx file through a fresh onnxruntime session from disk, and the two fp32 models in PyTorch
too, all timed interleaved in one loop (machine noise hits them alike); the median of the
repeats, and the speedups over the teacher in each runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from benchmarks.latency import interleaved_ms
from minidisc.commands import configure_logging
from minidisc.errors import MiniDiscError, exit_code
from minidisc.export import (
    dev_set,
    export,
    load_student,
    numpy_inputs,
    ort_session,
    random_batch,
    sidecar,
)
from minidisc.models.families import count_params
from minidisc.training.outputs import provenance, resolve_checkpoint

# name -> (checkpoint role, --quantize, --per_channel)
GRAPHS = {"teacher fp32": ("teacher", None, False), "student fp32": ("student", None, False),
          "student int8": ("student", "int8", False),
          "student int8 per-channel": ("student", "int8", True)}


def measure(a: argparse.Namespace) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if a.threads is not None and a.threads < 1:
        raise MiniDiscError(f"--threads {a.threads}: at least 1")
    ckpts = {"teacher": resolve_checkpoint(a.teacher), "student": resolve_checkpoint(a.student)}
    models = {f"{role} fp32": load_student(p) for role, p in ckpts.items()}
    if models["teacher fp32"].config.task_name != models["student fp32"].config.task_name:
        raise MiniDiscError("TEACHER and STUDENT were trained on different tasks")
    length = max(a.length)
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    record: dict[str, Any] = {"threads": threads, "torch": torch.__version__,
                              "onnxruntime": version("onnxruntime"), "graphs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, (role, quantize, per_channel) in GRAPHS.items():
            files[name] = Path(tmp) / f"{name.replace(' ', '_')}.onnx"
            export(ckpts[role], files[name], max_length=length, quantize=quantize,
                   per_channel=per_channel, max_metric_drop=100.0, data_dir=a.data_dir)
            graph: dict[str, Any] = {"mb": files[name].stat().st_size / 2**20}
            if quantize:
                graph.update(json.loads(sidecar(files[name]).read_text(encoding="utf-8")))
            record["graphs"][name] = graph
        dev = dev_set(ckpts["teacher"], a.data_dir, None, length)
        record["graphs"]["teacher fp32"]["dev"] = dev.score(files["teacher fp32"])
        record["metric"] = dev.task.selection_metric
        record["params"] = {name: count_params(m) for name, m in models.items()}
        # fresh sessions from the files on disk; no spinning, so idle onnxruntime threads
        # do not steal PyTorch's turn at the cores
        sessions = {name: ort_session(p, threads, spin=False) for name, p in files.items()}
        record["latency_ms"] = []
        for b in a.batch:
            for t in a.length:
                batch = random_batch(models["teacher fp32"].config, b, t)
                with torch.inference_mode():
                    ms = interleaved_ms(_calls(models, sessions, batch), a.repeats)
                record["latency_ms"].append({"batch": b, "length": t, "ms": ms})
    record["provenance"] = provenance(started, {k: str(v) for k, v in ckpts.items()})
    _print(record)
    if a.json:
        a.json.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return record


def _calls(models: dict[str, torch.nn.Module], sessions: dict[str, Any],
           batch: dict[str, torch.Tensor]) -> dict[str, Callable[[], object]]:
    """PyTorch forwards of the fp32 models and onnxruntime runs of every graph."""
    calls: dict[str, Callable[[], object]] = {
        f"torch {name}": (lambda m=m: m(**batch)) for name, m in models.items()}
    feed = numpy_inputs(batch)
    for name, s in sessions.items():
        calls[f"onnxruntime {name}"] = lambda s=s: s.run(["logits"], feed)
    return calls


def _print(r: dict[str, Any]) -> None:
    metric, g = r["metric"], r["graphs"]
    fp32 = g["student int8"]["fp32"]
    print(f"\n{g['student int8']['task']} {g['student int8']['split']} {metric} "
          f"({g['student int8']['examples']} examples), through onnxruntime")
    print(f"  teacher fp32 {100 * g['teacher fp32']['dev'][metric]:6.2f}   "
          f"student fp32 {100 * fp32[metric]:6.2f}")
    for name in ("student int8", "student int8 per-channel"):
        print(f"  {name:<25} {100 * g[name]['int8'][metric]:6.2f}  "
              f"(drop {g[name]['drop_points']:+.2f} points; {g[name]['int8_mb']:.1f} MB, "
              f"fp32 {g[name]['fp32_mb']:.1f} MB)")
    print(f"\nlatency, {r['threads']} threads, ms per batch (median of interleaved repeats); "
          "speedup over the teacher in the same runtime, int8 also over the fp32 student")
    for row in r["latency_ms"]:
        ms = row["ms"]
        print(f"batch {row['batch']} x {row['length']} tokens")
        for key, v in ms.items():
            runtime = key.split(" ", 1)[0]
            line = f"  {key:<38} {v:9.1f} ms  {ms[f'{runtime} teacher fp32'] / v:6.2f}x"
            if "int8" in key:
                line += (f"  ({ms['onnxruntime student fp32'] / v:.2f}x the fp32 student; "
                         f"{ms['torch teacher fp32'] / v:.2f}x PyTorch's teacher)")
            print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.int8", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="the fp32 teacher: checkpoint or run folder")
    p.add_argument("student", help="the student: checkpoint or run folder (same task)")
    p.add_argument("--data_dir", required=True, help="folder holding the task's folder")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--length", type=int, nargs="+", default=[128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int,
                   help="intra-op threads of both runtimes (default: one per core)")
    p.add_argument("--json", type=Path, help="also write every number to this file")
    a = p.parse_args(argv)
    configure_logging()
    return exit_code(lambda: measure(a))


if __name__ == "__main__":
    sys.exit(main())
