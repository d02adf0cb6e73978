"""The endpoints of the SST-2 study (docs/study.md) from its runs' results.json files.

    python -m benchmarks.study_sst2 benchmarks/results/study_sst2 --png FILE.png

(A) Figure 1: per seed and TA T, the TA's λ-tradeoff on the selection split (the path's first
stage: selection acc + λ·T/100) against the student's official-dev acc after the path T,90S;
Spearman ρ over the pooled points with a 95% interval from a bootstrap over seeds, beside ρ
against the sparsity T alone. (B) each MiniDisc setting's regret against the path chosen on
the selection split and against the best path on the official dev (an optimistic oracle),
the TA each seed chose, and costs as ratios to one path (training steps: exact; wall time:
noisy on shared cores). Runs read their selection split as `dev` and the official dev as `test`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from minidisc.errors import MiniDiscError, exit_code
from minidisc.report import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    collect,
    seed_groups,
    seed_of,
    summarize,
    tas_label,
)

LAM = 0.2  # fixed in advance (docs/study.md)
RHO_BOOTSTRAP = 2000
SEL, REP = "dev", "test"  # the run's splits: selection, official dev (reported)


def _acc(model: dict, split: str) -> float | None:
    v = (model.get(split) or {}).get("acc")
    return float(v) if isinstance(v, (int, float)) else None


def _steps(run: dict) -> int:
    """Optimizer steps the run trained, every stage or iteration counted."""
    if run["mode"] == "maxidisc":
        return sum(int(s["train"]["steps"]) for s in run["stages"])
    if run["mode"] == "minidisc":
        return sum(int(it["steps"]) for it in run["iterations"])
    return int(run["train"]["steps"])


def _passes(run: dict) -> int:
    """Student forward-backward passes: optimizer steps times the models each step trains (a
    MiniDisc step trains every candidate of its sandwich, the smallest and the largest plus
    --sandwich_k others when set; the teacher's one forward per step is not counted)."""
    if run["mode"] != "minidisc":
        return _steps(run)
    k = (run.get("args") or {}).get("sandwich_k", "all")
    per_step = [len(it["candidates"]) if k in (None, "all")
                else min(len(it["candidates"]), int(k) + 2) for it in run["iterations"]]
    return sum(int(it["steps"]) * n for it, n in zip(run["iterations"], per_step))


def _spearman(points: list[tuple[float, float]]) -> float:
    from scipy.stats import spearmanr

    xs, ys = zip(*points)
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(spearmanr(xs, ys).statistic)


def rho_with_interval(by_seed: dict[Any, list[tuple[float, float]]]) -> dict[str, Any]:
    """Spearman ρ over every seed's points; 95% percentile interval from resampling seeds."""
    seeds = sorted(by_seed, key=str)
    rho = _spearman([p for s in seeds for p in by_seed[s]])
    if len(seeds) < 2:
        return {"rho": rho, "interval": (math.nan, math.nan), "seeds": len(seeds)}
    rng, rhos = random.Random(BOOTSTRAP_SEED), []
    for _ in range(RHO_BOOTSTRAP):
        pick = [rng.choice(seeds) for _ in seeds]
        r = _spearman([p for s in pick for p in by_seed[s]])
        if math.isfinite(r):
            rhos.append(r)
    rhos.sort()
    lo = rhos[int((1 - CONFIDENCE) / 2 * (len(rhos) - 1))] if rhos else math.nan
    hi = rhos[int((1 + CONFIDENCE) / 2 * (len(rhos) - 1))] if rhos else math.nan
    return {"rho": rho, "interval": (lo, hi), "seeds": len(seeds)}


def figure1_points(runs: list[dict]) -> list[dict[str, Any]]:
    """One point per finished MaxiDisc path T,90S: seed, T, tradeoff, student accs."""
    out = []
    for r in runs:
        if r["mode"] != "maxidisc" or len(r["stages"]) != 2:
            continue
        ta, student = r["stages"]
        t = float(ta["sparsity"])
        sel = _acc(ta, SEL)
        if sel is None or _acc(student, REP) is None:
            continue
        out.append({"seed": seed_of(r), "ta": t, "tradeoff": sel + LAM * t / 100,
                    "ta_sel": sel, "student_sel": _acc(student, SEL),
                    "student_rep": _acc(student, REP), "steps": _steps(r),
                    "passes": _passes(r),
                    "wall": float(r.get("wall_time_s") or math.nan)})
    return sorted(out, key=lambda p: (str(p["seed"]), p["ta"]))


def _fmt(v: float, scale: float = 100) -> str:
    return f"{v * scale:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"


def _iv(iv: tuple[float, float], scale: float = 100) -> str:
    return f"[{_fmt(iv[0], scale)}, {_fmt(iv[1], scale)}]"


def endpoints(runs: list[dict]) -> str:
    pts = figure1_points(runs)
    by_seed: dict[Any, list[dict]] = {}
    for p in pts:
        by_seed.setdefault(p["seed"], []).append(p)
    parts = ["# SST-2 study: endpoints", "",
             f"Selection split = the runs' `{SEL}`, official dev = `{REP}`; acc ×100; λ = {LAM}.",
             "", "## (A) Figure 1: the TA's λ-tradeoff vs the student after its path", "",
             "| seed | TA | TA selection acc | tradeoff | student selection acc | "
             "student official-dev acc |", "|---|---:|---:|---:|---:|---:|"]
    parts += [f"| {p['seed']} | {p['ta']:g}S | {_fmt(p['ta_sel'])} | {_fmt(p['tradeoff'])} | "
              f"{_fmt(p['student_sel'])} | {_fmt(p['student_rep'])} |" for p in pts]
    for name, x in (("λ-tradeoff", "tradeoff"), ("sparsity alone", "ta")):
        res = rho_with_interval({s: [(p[x], p["student_rep"]) for p in ps]
                                 for s, ps in by_seed.items()})
        parts += ["", f"Spearman ρ (student official-dev acc vs {name}): {_fmt(res['rho'], 1)} "
                  f"(95% interval over seeds {_iv(res['interval'], 1)}; {len(pts)} points, "
                  f"{res['seeds']} seeds)"]
    path_steps = [p["steps"] for p in pts]
    path_wall = [p["wall"] for p in pts if math.isfinite(p["wall"])]
    one_steps = sum(path_steps) / len(path_steps) if path_steps else math.nan
    one_passes = sum(p["passes"] for p in pts) / len(pts) if pts else math.nan
    one_wall = sum(path_wall) / len(path_wall) if path_wall else math.nan
    parts += ["", "## (B) MiniDisc's regret", "",
              "Regret = MiniDisc's student official-dev acc minus that of the MaxiDisc path "
              "chosen on the selection split (highest student selection acc) / the best path on "
              "the official dev (an optimistic oracle: it peeks at the reported data), per seed; "
              "mean ± std (n) and 95% intervals (bootstrap | t) over seeds.", "",
              "| setting | vs path chosen on selection | 95% bootstrap | 95% t | vs oracle path "
              "| 95% bootstrap | 95% t | TA per seed | student passes / path | wall / path |",
              "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for task_groups in seed_groups(runs).values():
        for g in task_groups:
            if g["mode"] != "minidisc":
                continue
            sel_regret, oracle_regret, steps, walls = [], [], [], []
            for seed, run in g["runs"].items():
                paths = by_seed.get(seed, [])
                mine = _acc(run["final"], REP)
                if not paths or mine is None:
                    continue
                chosen = max(paths, key=lambda p: (p["student_sel"], -p["ta"]))
                sel_regret.append(mine - chosen["student_rep"])
                oracle_regret.append(mine - max(p["student_rep"] for p in paths))
                steps.append(_passes(run) / one_passes)
                walls.append(float(run.get("wall_time_s") or math.nan) / one_wall)
            if not sel_regret:
                continue
            a, b = summarize(sel_regret), summarize(oracle_regret)
            tas = Counter(tas_label(r) for r in g["runs"].values())
            parts.append(
                f"| {g['label']} | {_fmt(a['mean'])} ± {_fmt(a['std'])} ({a['n']}) | "
                f"{_iv(a['bootstrap'])} | {_iv(a['t'])} | {_fmt(b['mean'])} ± {_fmt(b['std'])} "
                f"({b['n']}) | {_iv(b['bootstrap'])} | {_iv(b['t'])} | "
                + ", ".join(f"{k}×{n}" for k, n in tas.most_common())
                + f" | {_fmt(sum(steps) / len(steps), 1)} | {_fmt(sum(walls) / len(walls), 1)} |")
    parts += ["", "## Cost of every method as a ratio to one path", "",
              f"One path = the mean over finished paths: {_fmt(one_steps, 1)} optimizer steps, "
              f"{_fmt(one_passes, 1)} student forward-backward passes (steps × models each "
              f"step trains: exact), {_fmt(one_wall / 60, 1)} min wall (shared cores: noisy).",
              "", "| method | runs | steps / path | student passes / path | wall / path |",
              "|---|---:|---:|---:|---:|"]
    for task_groups in seed_groups(runs).values():
        for g in task_groups:
            rs = list(g["runs"].values())
            if g["mode"] == "finetune":
                continue
            steps = sum(_steps(r) for r in rs) / len(rs)
            passes = sum(_passes(r) for r in rs) / len(rs)
            wall = sum(float(r.get("wall_time_s") or 0) for r in rs) / len(rs)
            parts.append(f"| {g['label']} | {len(rs)} | {_fmt(steps / one_steps, 1)} | "
                         f"{_fmt(passes / one_passes, 1)} | {_fmt(wall / one_wall, 1)} |")
    return "\n".join(parts) + "\n"


def figure1(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = figure1_points(runs)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    seeds = sorted({p["seed"] for p in pts}, key=str)
    for i, seed in enumerate(seeds):
        ps = [p for p in pts if p["seed"] == seed]
        for a, x in ((ax, "tradeoff"), (ax2, "ta")):
            a.plot([100 * p[x] if x == "tradeoff" else p[x] for p in ps],
                   [100 * p["student_rep"] for p in ps], "o-", color=f"C{i}", alpha=0.8,
                   label=f"seed {seed}")
            for p in ps:
                a.annotate(f"{p['ta']:g}S", (100 * p[x] if x == "tradeoff" else p[x],
                                             100 * p["student_rep"]), fontsize=8,
                           xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"TA's λ-tradeoff on the selection split (acc + {LAM}·s/100, ×100)")
    ax2.set_xlabel("TA sparsity (%)")
    ax.set_ylabel("student (90S) official-dev acc after the path (×100)")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle("SST-2 (8k-row subset), MiniLM teacher: does the TA's tradeoff predict the "
                 "student? (docs/study.md)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.study_sst2",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="folders of the study's results.json files")
    ap.add_argument("--png", type=Path, default=None, help="write Figure 1 here")
    args = ap.parse_args(argv)

    def run() -> None:
        runs = collect(args.paths)
        if not figure1_points(runs):
            raise MiniDiscError(f"{args.paths[0]}: no finished MaxiDisc path with a `{REP}` "
                                "split (the study's official dev)")
        print(endpoints(runs))
        if args.png is not None:
            figure1(runs, args.png)
            print(f"Figure 1 in {args.png}", file=sys.stderr)

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
