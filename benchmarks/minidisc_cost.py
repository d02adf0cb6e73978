"""What one MiniDisc trial costs against one MaxiDisc path and direct distillation.

    python -m benchmarks.minidisc_cost PRUNABLE_TEACHER --data_dir ../shared/data --task mrpc \\
        --out /tmp/cost [--runs maxidisc_50_90 minidisc ...] [-- extra run.py flags]

Each configuration runs through its bert_scripts wrapper in its own process, one after the
other in this one invocation, so the ratios compare runs on the same machine state. Per run:
the selection metric of the final student, wall time, the share of wall time spent on
dev/test evaluation (from results.json), and the process's peak RSS (from wait4). The table
ends with each run's wall time as a multiple of the MaxiDisc 50→90S path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from minidisc.report import dev_splits

ROOT = Path(__file__).resolve().parent.parent

# name -> (mode script, positional arguments after the teacher, extra run.py flags)
RUNS: dict[str, tuple[str, list[str], list[str]]] = {
    "distill_90": ("distillation", ["90S"], []),
    "maxidisc_50_90": ("maxidisc", ["50,90S"], []),
    "minidisc": ("minidisc", ["90", "0.2"], ["--candidate_eval_every", "1"]),
    "minidisc_every4": ("minidisc", ["90", "0.2", "e4"], ["--candidate_eval_every", "4"]),
    "minidisc_k0": ("minidisc", ["90", "0.2", "k0"], ["--sandwich_k", "0"]),
    "minidisc_k0_final_target": ("minidisc", ["90", "0.2", "k0t"],
                                 ["--sandwich_k", "0", "--final_sandwich", "target",
                                  "--candidate_eval_every", "4"]),
    "minidisc_k0_final_target_every1": ("minidisc", ["90", "0.2", "k0t1"],
                                        ["--sandwich_k", "0", "--final_sandwich", "target",
                                         "--candidate_eval_every", "1"]),
    # a half-epoch search (at --num_train_epochs 1), then the student in a full final iteration
    "minidisc_search": ("minidisc", ["90", "0.2", "s05"],
                        ["--sandwich_k", "0", "--final_sandwich", "target",
                         "--candidate_eval_every", "4", "--search_epochs", "0.5"]),
    "minidisc_search_k1": ("minidisc", ["90", "0.2", "s05k1"],
                           ["--sandwich_k", "1", "--final_sandwich", "target",
                            "--candidate_eval_every", "4", "--search_epochs", "0.5"]),
    "minidisc_above_target": ("minidisc", ["90", "0.2", "above"],
                              ["--candidates_above_target"]),
    "minidisc_bf16": ("minidisc", ["90", "0.2", "bf16"], ["--use_bf16"]),
    "distill_90_bf16": ("distillation", ["90S", "bf16"], ["--use_bf16"]),
    "distill_95": ("distillation", ["95S"], []),
    "maxidisc_90_95": ("maxidisc", ["90,95S"], []),
    "minidisc_95": ("minidisc", ["95", "0.2"], []),
    "minidisc_95_search": ("minidisc", ["95", "0.2", "s05"],
                           ["--sandwich_k", "0", "--final_sandwich", "target",
                            "--candidate_eval_every", "4", "--search_epochs", "0.5"]),
    "minidisc_95_k0_final_target": ("minidisc", ["95", "0.2", "k0t"],
                                    ["--sandwich_k", "0", "--final_sandwich", "target"]),
}
BASELINE = "maxidisc_50_90"


def run_one(name: str, teacher: str, data_dir: str, task: str, out: Path,
            extra: list[str]) -> dict:
    script, positional, flags = RUNS[name]
    env = {**os.environ, "DATA_DIR": str(Path(data_dir).resolve()),
           "OUTPUT_DIR": str(out.resolve())}
    cmd = ["bash", str(ROOT / "bert_scripts" / f"run_{script}_{task}.sh"), teacher, *positional,
           *flags, *extra]
    log = out / f"{name}.log"
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed: see {log}")
    results = newest_results(out)
    return {"name": name, "peak_rss_mib": usage.ru_maxrss / 1024, **summary(results)}


def newest_results(out: Path) -> dict:
    files = [f for f in out.glob("*/results.json")
             if ".prev-" not in f.parent.name and ".staging" not in f.parent.name]
    return json.loads(max(files, key=lambda f: f.stat().st_mtime).read_text())


def summary(r: dict) -> dict:
    row = {"metric": next(iter(dev_splits(r["final"]).values()))[r["selection_metric"]],
           "wall_s": r["wall_time_s"], "eval_share": r.get("eval_share"),
           "sparsity": r["final"]["sparsity"]}
    if r["mode"] == "minidisc":
        row["tas"] = r["teacher_assistants"]
        row["final_from_iteration"] = r.get("final_from_iteration")
    return row


def table(rows: list[dict]) -> str:
    base = next((r["wall_s"] for r in rows if r["name"] == BASELINE), None)
    lines = ["| run | sparsity | TA | dev metric | wall s | × MaxiDisc 50→90S | eval share "
             "| peak RSS MiB |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['wall_s'] / base:.2f}" if base else "–"
        tas = ",".join(f"{t:g}" for t in r.get("tas", [])) or "–"
        share = f"{100 * r['eval_share']:.0f}%" if r.get("eval_share") is not None else "–"
        lines.append(f"| {r['name']} | {r['sparsity']:g} | {tas} | {100 * r['metric']:.2f} | "
                     f"{r['wall_s']:.0f} | {ratio} | {share} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="prunable (sparsified) finetuned checkpoint or run folder")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--task", default="mrpc")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", nargs="+", default=[BASELINE, "minidisc",
                                                 "minidisc_k0_final_target"],
                   choices=sorted(RUNS))
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.runs:
        rows.append(run_one(name, str(Path(a.teacher).resolve()), a.data_dir, a.task, a.out,
                            extra))
        (a.out / "cost.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(table(rows), flush=True)


if __name__ == "__main__":
    main()
