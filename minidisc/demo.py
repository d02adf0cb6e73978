"""The whole pipeline in one offline command: finetune -> sparsify -> minidisc, then a summary.

    python -m minidisc.demo [--output_dir outputs/demo] [--target_sparsity 90] [--epochs 2]

Runs the shipped MiniLM on the generated demo task through the same code path as run.py
(the task is generated into OUTPUT_DIR/data unless --data_dir holds it, so an installed
`minidisc-demo` runs from any folder), and ends with the teacher and student metrics, the
teacher assistant chosen, parameters kept, and CPU latency of teacher vs student: timed
interleaved (teacher, student, teacher, student, ...) so machine noise hits both alike,
reported as median and spread.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from minidisc.cli import parse_args
from minidisc.commands import ArgumentParser, configure_logging
from minidisc.data import demo_task, pipeline
from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import write_json
from minidisc.main import run
from minidisc.models import load_model
from minidisc.report import dev_splits

logger = logging.getLogger("minidisc.demo")


def spread(times: list[float]) -> dict[str, float]:
    """Median, quartiles and range of some timings."""
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times * 3)
    return {"median": statistics.median(times), "q1": q1, "q3": q3, "min": min(times),
            "max": max(times)}


@torch.inference_mode()
def cpu_latency_ms(models: dict[str, torch.nn.Module], batch: dict[str, torch.Tensor],
                   repeats: int = 20) -> dict[str, dict[str, float]]:
    """Forward time per batch on the CPU (ms), per model: median, quartiles, range. The models
    take turns (a, b, a, b, ...) so machine noise hits them alike; "speedup" spreads the
    per-turn ratio of the first model's time to each other's."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():
        m.eval().cpu()
        m(**batch)  # warm-up
    for _ in range(repeats):
        for name, m in models.items():
            start = time.perf_counter()
            m(**batch)
            times[name].append((time.perf_counter() - start) * 1000)
    out = {name: spread(t) for name, t in times.items()}
    first, *others = times
    for name in others:
        out[name]["speedup"] = spread([a / b for a, b in zip(times[first], times[name])])
    return out


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m minidisc.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = " (default: %(default)s)"
    p.add_argument("--data_dir", default=None,
                   help="folder holding the task folder (default: for the demo task, "
                   "OUTPUT_DIR/data, where it is generated when missing; else datasets)")
    p.add_argument("--task_name", default="demo",
                   help="task to run the pipeline on; any task of run.py" + d)
    p.add_argument("--output_dir", default="outputs/demo",
                   help="where the three run folders and summary.json go" + d)
    p.add_argument("--teacher_model_path", default=None,
                   help="model to finetune as the teacher (default: the shipped MiniLM)")
    p.add_argument("--target_sparsity", type=float, default=90,
                   help="sparsity (%%) of the final student" + d)
    p.add_argument("--lam", type=float, default=0.2,
                   help="lambda of MiniDisc's tradeoff: higher favours sparser teacher "
                   "assistants" + d)
    p.add_argument("--epochs", type=float, default=2,
                   help="epochs of each training (finetune, each MiniDisc iteration)" + d)
    p.add_argument("--trunc_sparsity", type=float, default=70,
                   help="smallest TA candidate (fewer candidates: a faster sandwich on a "
                   "CPU)" + d)
    p.add_argument("--latency_repeats", type=int, default=20,
                   help="timed forwards per model for the CPU latency comparison" + d)
    p.add_argument("--use_cpu", action="store_true",
                   help="train on the CPU even when CUDA is available (latency is always "
                   "measured on the CPU)")
    return p


def _step(argv: list[str]) -> tuple[dict, Path]:
    """One run.py run: its results and its run folder (named by run.py's own RunConfig)."""
    cfg = parse_args(argv)
    return run(cfg, argv), cfg.run_folder()


def run_demo(argv: Sequence[str] | None = None) -> dict:
    a = _parser().parse_args(argv)
    if a.latency_repeats < 1:
        raise MiniDiscError(f"--latency_repeats {a.latency_repeats}: must be at least 1")
    out = Path(a.output_dir)
    if a.data_dir is None:
        a.data_dir = str(out / "data") if a.task_name == "demo" else "datasets"
    if a.task_name == "demo" and not (Path(a.data_dir) / "demo").is_dir():
        logger.info("generating the demo task in %s", demo_task.ensure(Path(a.data_dir)))
    common = ["--task_name", a.task_name, "--data_dir", a.data_dir, "--output_dir", str(out),
              "--max_length", "64", "--per_device_train_batch_size", "32",
              "--per_device_eval_batch_size", "64", "--learning_rate", "5e-5",
              "--num_train_epochs", str(a.epochs), "--num_patience_epochs", str(a.epochs),
              "--log_interval", "20", "--seed", "776"] + (["--use_cpu"] if a.use_cpu else [])
    teacher_flag = ["--teacher_model_path", a.teacher_model_path] if a.teacher_model_path else []
    logger.info("1/3 finetune the teacher")
    ft, ft_dir = _step(["--mode", "finetune", *common, *teacher_flag, "--do_train",
                        "--do_infer"])
    logger.info("2/3 sparsify it (importance, reorder, sparsity map)")
    _, sp_dir = _step(["--mode", "sparsify", *common, "--teacher_model_path", str(ft_dir)])
    logger.info("3/3 minidisc to %g%% sparsity", a.target_sparsity)
    md, md_dir = _step(["--mode", "minidisc", *common, "--teacher_model_path", str(sp_dir),
                        "--target_sparsity", f"{a.target_sparsity:g}", "--lam", f"{a.lam:g}",
                        "--trunc_sparsity", f"{a.trunc_sparsity:g}",
                        "--learning_rate", "1e-4"])
    model_type = md["args"]["model_type"]

    task = TASKS[a.task_name]
    teacher = load_model(model_type, sp_dir / "model", task, "teacher")
    student = load_model(model_type, md_dir / md["final"]["path"], task, "student")
    tok = pipeline.load_tokenizer(sp_dir / "model")
    split = pipeline.load_split(task, a.data_dir, task.dev_splits[0], tok, 64)
    loader = pipeline.eval_loader(split, task, tok, 32)
    batch = {k: v for k, v in next(iter(loader)).items() if k != "labels"}
    latency = cpu_latency_ms({"teacher": teacher, "student": student}, batch,
                             a.latency_repeats)
    speedup = latency["student"].pop("speedup")

    metric = md["selection_metric"]
    t_params, s_params = md["teacher"]["params"], md["final"]["params"]
    summary = {
        "teacher_metric": next(iter(dev_splits(ft["final"]).values()))[metric],
        "teacher_assistants": md["teacher_assistants"],
        "student_sparsity": md["final"]["sparsity"],
        "student_metric": next(iter(dev_splits(md["final"]).values()))[metric],
        "teacher_params": t_params, "student_params": s_params,
        "encoder_params_kept": s_params["encoder"] / t_params["encoder"],
        "cpu_latency_ms": latency, "latency_repeats": a.latency_repeats, "speedup": speedup,
        "metric": metric,
    }
    write_json(out / "summary.json", summary)
    tas = ", ".join(f"{s:g}%" for s in summary["teacher_assistants"]) or "none"
    layers = md["teacher"]["num_layers"]
    teacher_name = f"teacher ({'MiniLM, ' if a.teacher_model_path is None else ''}{layers}L)"
    lines = [
        "",
        f"MiniDisc demo on '{a.task_name}' (dev {metric}):",
        f"  {teacher_name:<26} {100 * summary['teacher_metric']:6.2f}"
        f"   encoder params {t_params['encoder'] / 1e6:6.2f}M"
        f"  total {t_params['total'] / 1e6:6.2f}M",
        f"  teacher assistant chosen   {tas} (lambda = {a.lam:g})",
        f"  student at {summary['student_sparsity']:g}% sparsity   "
        f"{100 * summary['student_metric']:6.2f}   encoder params {s_params['encoder'] / 1e6:6.2f}M"
        f"  total {s_params['total'] / 1e6:6.2f}M ({100 * summary['encoder_params_kept']:.1f}% "
        "of the encoder kept)",
        f"  CPU latency per batch of {batch['input_ids'].shape[0]}, median [IQR] of "
        f"{a.latency_repeats} interleaved runs: teacher {_ms(latency['teacher'])}, "
        f"student {_ms(latency['student'])}",
        f"  speedup {speedup['median']:.2f}x (median of the per-run teacher/student ratios; "
        f"IQR {speedup['q1']:.2f}-{speedup['q3']:.2f}x, range {speedup['min']:.2f}-"
        f"{speedup['max']:.2f}x)",
        f"  runs and checkpoints in {out}/",
    ]
    print("\n".join(lines))
    return summary


def _ms(t: dict[str, float]) -> str:
    return (f"{t['median']:.1f} ms [{t['q1']:.1f}-{t['q3']:.1f}] "
            f"(min {t['min']:.1f}, max {t['max']:.1f})")


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return exit_code(lambda: run_demo(argv))


if __name__ == "__main__":
    sys.exit(main())
