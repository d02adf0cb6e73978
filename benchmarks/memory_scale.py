"""Peak memory of ONE MiniDisc sandwich step at pretrained-model sizes.

    python -m benchmarks.memory_scale [--family bert] [--sizes base,large] [--batch 8]
                                      [--seq_len 128] [--candidates 50,70,90]
                                      [--precisions fp32,bf16] [--device cpu|cuda]

A step is what `--mode minidisc` does per batch: the teacher's forward, then per candidate
sparsity the student's forward, loss and backward (the real `sandwich_step` and `Distiller`),
then the AdamW step (its state is allocated there, as in the first step of a run). Models have
random weights and a random sparsity map; a step's memory does not depend on the weights.

Each configuration (size x autocast precision x gradient checkpointing) runs in a fresh
process: on the CPU the table gives its resident set before the step (models, inputs) and its
peak (`ru_maxrss` from `os.wait4`; the parent imports no torch, so no child inherits a larger
peak); on CUDA `torch.cuda.max_memory_allocated` around the step. `step s` is that one
(cold) step's wall time.

Families are size presets plus the classes that build them (`FAMILIES`): T5 encoders (large,
3B) join as a "t5" family once minidisc/models/sparse_t5.py provides MiniDiscT5Config and
SparseEncT5ForSequenceClassification with the sparse_bert interface (reorder, sparsify).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Family:
    """How to build a prunable classifier of one architecture at a named size."""

    module: str  # where the classes live
    config_class: str
    model_class: str
    presets: dict[str, dict]  # size name -> config keywords


FAMILIES: dict[str, Family] = {
    "bert": Family(
        "minidisc.models.sparse_bert", "MiniDiscBertConfig", "SparseBertForSequenceClassification",
        {"base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                      intermediate_size=3072),
         "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
                       intermediate_size=4096)}),
    "t5": Family(  # encoders of T5 v1.0 large and 3B
        "minidisc.models.sparse_t5", "MiniDiscT5Config", "SparseEncT5ForSequenceClassification",
        {"large": dict(num_layers=24, d_model=1024, num_heads=16, d_kv=64, d_ff=4096),
         "3b": dict(num_layers=24, d_model=1024, num_heads=32, d_kv=128, d_ff=16384)}),
}


def _vm(field: str) -> float:
    """A /proc/self/status memory field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> None:
    """Build teacher and student, run one sandwich step, print a JSON line of numbers."""
    import copy

    import torch

    from minidisc.compression.losses import objective_for
    from minidisc.compression.sparsity_map import make_prunable, random_importance
    from minidisc.data.tasks import TASKS
    from minidisc.modes.distill import Distiller
    from minidisc.modes.minidisc import sandwich_step
    from minidisc.training.loop import Backward, param_groups
    from minidisc.training.runtime import Runtime

    fam = FAMILIES[spec["family"]]
    try:
        module = importlib.import_module(fam.module)
    except ImportError:
        raise SystemExit(f"family {spec['family']} needs {fam.module}, not in this tree") from None
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    config = getattr(module, fam.config_class)(**fam.presets[spec["size"]], num_labels=2,
                                               vocab_size=30522)
    teacher = getattr(module, fam.model_class)(config)
    make_prunable(teacher, *random_importance(teacher, 1))
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    if spec["checkpointing"]:
        student.gradient_checkpointing_enable()
    bf16 = spec["precision"] == "bf16"
    rt = Runtime(device=device, bf16=bf16)
    distiller = Distiller(teacher, objective_for("sparsebert_cls"), TASKS["sst2"], device,
                          teacher_dtype=spec["teacher_dtype"])
    step = sandwich_step(student, distiller, spec["candidates"])
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (spec["batch"], spec["seq_len"]), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids),
             "labels": torch.randint(0, 2, (spec["batch"],), generator=g)}
    optimizer = torch.optim.AdamW(param_groups(student, 0.01), lr=1e-5)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() / 2**20 if cuda else _vm("VmRSS")
    tick = time.perf_counter()
    with rt.autocast():
        step(batch, Backward.plain(student))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    out = {"before_mib": before, "step_s": time.perf_counter() - tick}
    if cuda:
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out), flush=True)


def measure(spec: dict) -> dict:
    """One configuration in a fresh process; its numbers, with the CPU peak from wait4."""
    cmd = [sys.executable, "-m", "benchmarks.memory_scale", "--child", json.dumps(spec)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # wait4 before reading: the pipes are small (one JSON line; stderr only on failure)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{spec}: failed\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if spec["device"] == "cpu":
        result["peak_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(json.loads(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=sorted(FAMILIES), default="bert")
    p.add_argument("--sizes", default=None, help="comma-separated presets (default: all)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--candidates", default="50,70,90",
                   help="candidate sparsities of the sandwich (the peak is the widest one's)")
    p.add_argument("--precisions", default="fp32,bf16", help="autocast: fp32 and/or bf16")
    p.add_argument("--teacher_dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    a = p.parse_args(argv)
    sizes = a.sizes.split(",") if a.sizes else list(FAMILIES[a.family].presets)
    print(f"# {a.family}, batch {a.batch} x {a.seq_len} tokens, candidates {a.candidates}, "
          f"teacher {a.teacher_dtype}, {a.device}; "
          f"{'peak RSS' if a.device == 'cpu' else 'max_memory_allocated'} in MiB", flush=True)
    print(f"{'size':<6} {'autocast':<8} {'checkpointing':<13} {'before MiB':>10} "
          f"{'peak MiB':>9} {'step s':>7}", flush=True)
    for size in sizes:
        for precision in a.precisions.split(","):
            for ckpt in (False, True):
                spec = {"family": a.family, "size": size, "precision": precision,
                        "checkpointing": ckpt, "batch": a.batch, "seq_len": a.seq_len,
                        "candidates": [float(c) for c in a.candidates.split(",")],
                        "teacher_dtype": a.teacher_dtype, "device": a.device}
                r = measure(spec)
                print(f"{size:<6} {precision:<8} {'on' if ckpt else 'off':<13} "
                      f"{r['before_mib']:10.0f} {r['peak_mib']:9.0f} {r['step_s']:7.1f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
