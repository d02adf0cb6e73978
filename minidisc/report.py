"""Turn finished runs into the paper's tables (markdown) and figures (PNG).

    python -m minidisc.report outputs/ [more run folders or results.json ...] [--out DIR]

Rows in paper order: Teacher, Distill, MaxiDisc, MiniDisc, a row per seed; runs that differ only
in --seed are then summarised (mean ± std, 95% intervals, paired differences against direct
distillation); the newest run wins only a re-run of the same flags and seed.
A model's metrics sit under its split names (`final.dev.acc`; MNLI: `final.dev_matched.acc`);
results.json files from before that (`final.dev.dev.acc`) are read too.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from minidisc.config import CONTROL_FLAGS, FLAGS, OUTPUT_FLAGS
from minidisc.errors import MiniDiscError
from minidisc.registry import MODES, RESULTS

GROUPS = ("teacher", "distill", "maxidisc", "minidisc")  # the paper's row order
NEEDS = {"distill": ("teacher", "student_spec"), "maxidisc": ("teacher", "path", "stages"),
         "minidisc": ("teacher", "lam", "iterations"), "sparsify": ("params_by_sparsity",)}


def dev_splits(model: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A model record's dev metrics by split (`dev`, or MNLI's `dev_matched` ...), selection
    split first."""
    return {k: v for k, v in model.items()
            if (k == "dev" or k.startswith("dev_")) and isinstance(v, dict)}


def _labelled(model: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The dev splits, then the test splits scored with --do_test (test, test_matched ...)."""
    return {**dev_splits(model), **{k: v for k, v in model.items() if isinstance(v, dict) and (
        k == "test" or k.startswith("test_")) and v}}


def _lift(model: Any) -> None:
    """An older results.json nested split names under "dev"/"test" (final.dev.dev.acc):
    lift them to the model's level (final.dev.acc)."""
    if not isinstance(model, dict):
        return
    for key in ("dev", "test"):
        inner = model.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, dict) for v in inner.values()):
            del model[key]
            model.update(inner)


def _load(f: Path) -> dict[str, Any]:
    try:
        run = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MiniDiscError(f"{f}: not a readable results.json ({e})") from None
    if not isinstance(run, dict) or run.get("mode") not in MODES:
        raise MiniDiscError(f"{f}: malformed results.json (no known 'mode')")
    need = ("task", "selection_metric", "final", *NEEDS.get(run["mode"], ()))
    missing = [k for k in need if k not in run]
    for model in (run.get("final"), run.get("teacher"), *(run.get("iterations") or []),
                  *(run.get("stages") or [])):
        _lift(model)
    if missing or not isinstance(run["final"], dict) or not dev_splits(run["final"]):
        what = ", ".join(missing) or "final.dev"
        raise MiniDiscError(f"{f}: malformed results.json (missing {what})")
    run["_file"] = str(f)
    return run


def collect(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every results.json under the given folders (or the given files), oldest first."""
    files: dict[Path, None] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise MiniDiscError(f"{p}: no such file or folder")
        found = [p] if p.is_file() else sorted(  # skip moved-aside and half-written runs
            f for f in p.rglob(RESULTS)
            if not any(".prev-" in q or ".staging" in q for q in f.relative_to(p).parts))
        if not found:
            raise MiniDiscError(f"{p}: no {RESULTS} found")
        files.update((f.resolve(), None) for f in found)
    runs = [_load(f) for f in files]
    return sorted(runs, key=lambda r: Path(r["_file"]).stat().st_mtime)


def _name(run: dict) -> str:
    f = Path(run["_file"])
    return re.sub(r"[^\w.-]+", "_", f.parent.name if f.name == RESULTS else f.stem)


# not the method: the seed, and the flags that change only where and what is written or how
# the process runs (output and control flags: folders, suffix, --resume, --report_to, ...)
IGNORED_ARGS = frozenset({"seed", *OUTPUT_FLAGS, *CONTROL_FLAGS})


def run_args(run: dict) -> dict[str, Any]:
    """A run's flags (results.json "args"), those a later version added filled with their
    defaults: the run had no such flag, so it ran as the default does."""
    args = run.get("args") or {}
    return {**{k: f.default for k, f in FLAGS.items() if k not in args}, **args}


def setting(run: dict) -> tuple:
    """What makes a run's method: mode, task and every flag that changes what is computed but
    --seed. Runs that share it differ only in their seed."""
    args = run_args(run)
    spec = tuple(str(run.get(k)) for k in ("student_spec", "path", "lam", "target_sparsity"))
    return (run["mode"], run["task"], spec, *sorted(
        (k, json.dumps(v, sort_keys=True, default=str)) for k, v in args.items()
        if k not in IGNORED_ARGS))


def seed_of(run: dict) -> Any:
    return (run.get("args") or {}).get("seed")


def _rows(runs: list[dict]) -> dict[str, list[dict]]:
    """task -> rows in paper order: one row per method setting and seed (a re-run of the same
    setting and seed: the newest wins); the teacher row: finetune > sparsify > the teacher
    recorded by a distillation run. Labels name the seed where a setting has several, and the
    differing flags where settings share a label."""
    best: dict[tuple, tuple[int, dict]] = {}

    def put(key: tuple, prio: int, group: str, label: str, model: dict, wall: float | None,
            **extra) -> None:
        if key not in best or prio >= best[key][0]:  # runs come oldest first
            best[key] = (prio, dict(group=group, label=label, model=model, wall=wall, **extra))

    for run in runs:
        mode, t, wall = run["mode"], run["task"], run.get("wall_time_s")
        key = (setting(run), seed_of(run))
        if mode in ("finetune", "sparsify"):
            ft = mode == "finetune"
            put((t, "teacher"), 1 + ft, "teacher", "Teacher", run["final"], wall if ft else None)
        else:
            put((t, "teacher"), 0, "teacher", "Teacher", run["teacher"], None)
        if mode == "distill":
            spec = Path(str(run["student_spec"])).name
            put((t, mode, key), 0, mode, f"Distill {spec}", run["final"], wall, run=run)
        elif mode == "maxidisc":
            path = str(run["path"]).replace(",", "→")
            put((t, mode, key), 0, mode, f"MaxiDisc {path}", run["final"], wall,
                stages=run["stages"], run=run)
        elif mode == "minidisc":
            tas = "→".join(f"{float(s):g}S" for s in run.get("teacher_assistants") or [])
            label = f"MiniDisc λ={float(run['lam']):g} ({'TA ' + tas if tas else 'no TA'})"
            put((t, mode, key), 0, mode, label, run["final"], wall,
                iterations=run["iterations"], run=run)
    out: dict[str, list[dict]] = {}
    for (task, *_), (_, row) in best.items():
        out.setdefault(task, []).append(row)
    for rows in out.values():
        _name_settings([r for r in rows if "run" in r])
    for rows in out.values():
        teacher = next((r["model"] for r in rows if r["group"] == "teacher"), {})
        rows.sort(key=lambda r: (GROUPS.index(r["group"]), _x(r["model"], teacher),
                                 -r["model"].get("num_layers", 0), r["label"]))
    return dict(sorted(out.items()))


def _differing(runs: list[dict]) -> list[str]:
    """The flags whose values differ among these runs (seed and bookkeeping aside)."""
    args = [{k: v for k, v in run_args(r).items() if k not in IGNORED_ARGS} for r in runs]
    keys = sorted({k for a in args for k in a})
    return [k for k in keys if len({json.dumps(a.get(k), default=str) for a in args}) > 1]


def _name_settings(rows: list[dict]) -> None:
    """Append the flags that tell apart settings sharing a label, then the seed of settings
    run with several seeds (rows in place; each has its `run`)."""
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    for same in by_label.values():
        settings = {setting(r["run"]): r["run"] for r in same}
        keys = [k for k in _differing(list(settings.values())) if k != "teacher_model_path"]
        for r in same:
            args = run_args(r["run"])
            r["label"] += "".join(f", {k}={args.get(k)}" for k in keys)
    seeds: dict[tuple, set] = {}
    for r in rows:
        seeds.setdefault(setting(r["run"]), set()).add(seed_of(r["run"]))
    for r in rows:
        if len(seeds[setting(r["run"])]) > 1:
            r["label"] += f" · seed {seed_of(r['run'])}"


def _selection(runs: list[dict], task: str) -> str:
    return [r for r in runs if r["task"] == task][-1]["selection_metric"]  # the newest run's


def _sel(model: dict, metric: str) -> float | None:
    return next(iter(dev_splits(model).values()), {}).get(metric)


def _x(model: dict, teacher: dict) -> float:
    """Sparsity; a layer-dropped model is placed at the share of encoder params removed."""
    s = float(model.get("sparsity") or 0)
    if s == 0 and model.get("num_layers", 0) < teacher.get("num_layers", 0):
        enc, full = (m.get("params", {}).get("encoder") for m in (model, teacher))
        return 100 * (1 - enc / full) if enc and full else 0.0
    return s


def _fmt(v: Any, scale: float = 1, digits: int = 2) -> str:
    ok = isinstance(v, (int, float)) and math.isfinite(v)
    return f"{v * scale:.{digits}f}" if ok else "–"


def _mega(v: Any) -> str:
    """Millions: 2 decimals for real models, more for tiny test models."""
    return _fmt(v, 1e-6, 2 if not isinstance(v, (int, float)) or v >= 1e5 else 4)


def tables(runs: list[dict[str, Any]]) -> str:
    """The markdown report: one table per task, plus sparsify's params-per-sparsity table."""
    parts = ["# MiniDisc report", ""]
    for task, rows in _rows(runs).items():
        sel, cols = _selection(runs, task), []
        for r in rows:  # the selection metric first, then every other (split, metric)
            for split, metrics in _labelled(r["model"]).items():
                for m in ([] if cols else [sel]) + list(metrics):
                    cols += [] if (split, m) in cols else [(split, m)]
        splits = {s for s, _ in cols}
        heads = [m if len(splits) == 1 else f"{m} ({s})" for s, m in cols]
        heads[0] = f"**{heads[0]}**"
        t_enc = (rows[0]["model"].get("params") or {}).get("encoder")  # rows[0]: the teacher
        parts += [f"## {task}", "",
                  f"Dev (and --do_test's test) metrics ×100 (selection metric: {sel}); "
                  "params in millions; "
                  "time = wall time of the whole run.", "",
                  "| Method | " + " | ".join(heads) + " | Sparsity (%) | Layers | "
                  "Encoder params (M) | Encoder (% of teacher) | Total params (M) | Time (min) |",
                  "|---|" + "---:|" * (len(cols) + 6)]
        for r in rows:
            m, p = r["model"], r["model"].get("params") or {}
            dev = _labelled(m)
            vals = [_fmt((dev.get(s) or {}).get(k), 100) for s, k in cols]
            pct = _fmt(p.get("encoder") / t_enc, 100, 1) if t_enc and p.get("encoder") else "–"
            parts.append(f"| {r['label']} | " + " | ".join(vals) +
                         f" | {float(m.get('sparsity') or 0):g} | {m.get('num_layers', '–')} | "
                         f"{_mega(p.get('encoder'))} | {pct} | {_mega(p.get('total'))}"
                         f" | {_fmt(r['wall'], 1 / 60, 1)} |")
        sparsify = [r for r in runs if r["task"] == task and r["mode"] == "sparsify"]
        if sparsify:
            sp = sparsify[-1]
            table = sorted(sp["params_by_sparsity"].items(), key=lambda kv: float(kv[0]))
            full = table[0][1]["encoder"] if table else 0
            parts += ["", f"### {task}: params kept per sparsity ({_name(sp)})", "",
                      f"Dev {sp['selection_metric']} before / after reordering: "
                      + " / ".join(_fmt((sp.get(f"dev_{k}_reorder") or {}).get(
                          sp["selection_metric"]), 100) for k in ("before", "after")), "",
                      "| Sparsity (%) | Encoder params (M) | Encoder kept (%) | Total params (M) |",
                      "|---:|---:|---:|---:|"]
            parts += [f"| {float(s):g} | {_mega(p['encoder'])} | "
                      f"{_fmt(p['encoder'] / full if full else None, 100, 1)} | "
                      f"{_mega(p['total'])} |" for s, p in table]
        parts.append("")
    return "\n".join(parts)


# --- runs that differ only in --seed: means, intervals, paired differences ---------------

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same runs always give the same interval


def bootstrap_interval(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean over `values` (one per seed),
    resampled with replacement; (nan, nan) below two values. With few seeds it is narrow:
    read it beside the t-interval."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    means = np.random.default_rng(seed).choice(x, size=(samples, len(x))).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(lo), float(hi)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval of the mean (exact for normal values at any n >= 2)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = sum(values) / n
    half = t.ppf((1 + CONFIDENCE) / 2, n - 1) * _std(values) / math.sqrt(n)
    return mean - half, mean + half


def _std(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, std (n-1), the bootstrap and t 95% intervals of the mean."""
    vals = [float(v) for v in values]
    return {"n": len(vals), "mean": sum(vals) / len(vals) if vals else math.nan,
            "std": _std(vals), "bootstrap": bootstrap_interval(vals), "t": t_interval(vals)}


def _metric_splits(model: dict, metric: str) -> dict[str, float]:
    """Split -> the selection metric, for every labelled split of a model (dev*, test*)."""
    return {k: v[metric] for k, v in model.items()
            if (k in ("dev", "test") or k.startswith(("dev_", "test_")))
            and isinstance(v, dict) and isinstance(v.get(metric), (int, float))}


def _base_label(run: dict) -> str:
    mode = run["mode"]
    if mode == "distill":
        return f"Distill {Path(str(run['student_spec'])).name}"
    if mode == "maxidisc":
        return f"MaxiDisc {str(run['path']).replace(',', '→')}"
    if mode == "minidisc":
        return (f"MiniDisc λ={float(run['lam']):g}, target "
                f"{float(run.get('target_sparsity') or 0):g}S")
    return {"finetune": "Finetune", "sparsify": "Sparsify"}[mode]


def tas_label(run: dict) -> str:
    return "→".join(f"{float(s):g}S" for s in run.get("teacher_assistants") or []) or "none"


def seed_groups(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """task -> one group per method setting: {label, mode, runs: {seed: run}}, the newest
    run of each seed (never the newest of the group: every seed counts). Sparsify runs, which
    do not train, are left out."""
    groups: dict[tuple, dict[str, Any]] = {}
    for run in runs:  # oldest first: a re-run of a seed replaces the older one
        if run["mode"] == "sparsify":
            continue
        g = groups.setdefault(setting(run), {"mode": run["mode"], "task": run["task"],
                                             "label": _base_label(run), "runs": {}})
        g["runs"][seed_of(run)] = run
    out: dict[str, list[dict[str, Any]]] = {}
    for g in groups.values():
        out.setdefault(g["task"], []).append(g)
    for gs in out.values():
        by_label: dict[str, list[dict]] = {}
        for g in gs:
            by_label.setdefault(g["label"], []).append(g)
        for same in by_label.values():
            keys = [k for k in _differing([next(iter(g["runs"].values())) for g in same])
                    if k != "teacher_model_path"]
            for g in same:
                args = run_args(next(iter(g["runs"].values())))
                g["label"] += "".join(f", {k}={args.get(k)}" for k in keys)
        gs.sort(key=lambda g: (["finetune", *GROUPS].index(g["mode"]), g["label"]))
    return dict(sorted(out.items()))


def _baseline(group: dict, groups: list[dict]) -> dict | None:
    """Direct distillation to the same sparsity whose flags differ least from the group's
    (not the group itself)."""
    def first(g: dict) -> dict:
        return next(iter(g["runs"].values()))

    sparsity = float(first(group)["final"].get("sparsity") or 0)
    cands = [g for g in groups if g is not group and g["mode"] == "distill"
             and float(first(g)["final"].get("sparsity") or 0) == sparsity]
    if not cands:
        return None
    return min(cands, key=lambda g: (len(_differing([first(g), first(group)])), g["label"]))


def seed_stats(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """task -> a row per (group, split) of the selection metric over seeds: the values by
    seed, their summary, and the paired difference against direct distillation."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task, groups in seed_groups(runs).items():
        metric = _selection(runs, task)
        values = {id(g): {seed: _metric_splits(r["final"], metric)
                          for seed, r in g["runs"].items()} for g in groups}
        rows = out.setdefault(task, [])
        splits = sorted({s for g in groups for v in values[id(g)].values() for s in v},
                        key=lambda s: (s.startswith("test"), s))
        for split in splits:
            for g in groups:
                by_seed = {k: v[split] for k, v in values[id(g)].items() if split in v}
                if not by_seed:
                    continue
                row = {"task": task, "split": split, "metric": metric, "label": g["label"],
                       "mode": g["mode"], "values": by_seed, **summarize(list(by_seed.values()))}
                if g["mode"] == "minidisc":
                    row["tas"] = {k: tas_label(g["runs"][k]) for k in by_seed}
                base = _baseline(g, groups)
                if base is not None:
                    ref = {k: v[split] for k, v in values[id(base)].items() if split in v}
                    pairs = sorted(set(by_seed) & set(ref), key=str)
                    diffs = [by_seed[k] - ref[k] for k in pairs]
                    row["paired"] = {"against": base["label"], "seeds": pairs,
                                     **summarize(diffs)}
                rows.append(row)
    return out


def _interval(iv: tuple[float, float]) -> str:
    return f"[{_fmt(iv[0], 100)}, {_fmt(iv[1], 100)}]" if math.isfinite(iv[0]) else "–"


def seed_tables(runs: list[dict[str, Any]]) -> str:
    """Markdown: per task and split, mean ± std (n) over seeds with 95% intervals, and the
    paired difference against direct distillation (the same seeds on both sides)."""
    parts: list[str] = []
    for task, rows in seed_stats(runs).items():
        if not any(r["n"] > 1 for r in rows):
            continue
        for split in dict.fromkeys(r["split"] for r in rows):
            here = [r for r in rows if r["split"] == split]
            metric = here[0]["metric"]
            parts += [f"## {task}: {split} {metric} over seeds", "",
                      f"×100; mean ± std (n seeds); 95% intervals of the mean over seeds: "
                      f"bootstrap (percentile, {BOOTSTRAP_SAMPLES} resamples, seed "
                      f"{BOOTSTRAP_SEED}) and Student t. Δ: paired by seed against the direct "
                      "distillation named; an interval that includes 0 is no difference.", "",
                      "| Method | mean ± std (n) | 95% bootstrap | 95% t | Δ vs | Δ mean ± std (n) "
                      "| Δ 95% bootstrap | Δ 95% t | seeds |",
                      "|---|---:|---:|---:|---|---:|---:|---:|---|"]
            for r in here:
                p = r.get("paired")
                delta = (f"{p['against']} | {_fmt(p['mean'], 100)} ± {_fmt(p['std'], 100)} "
                         f"({p['n']}) | {_interval(p['bootstrap'])} | {_interval(p['t'])}"
                         if p and p["n"] else "– | – | – | –")
                seeds = ", ".join(f"{k}" + (f": {r['tas'][k]}" if "tas" in r else "")
                                  for k in r["values"])
                parts.append(f"| {r['label']} | {_fmt(r['mean'], 100)} ± {_fmt(r['std'], 100)}"
                             f" ({r['n']}) | {_interval(r['bootstrap'])} | "
                             f"{_interval(r['t'])} | {delta} | {seeds} |")
            parts.append("")
    return "\n".join(parts)


def _seed_figure(plt, task: str, rows: list[dict], path: Path) -> None:
    """Per method: each seed's value, the mean and its 95% bootstrap interval; beside it the
    paired difference against direct distillation."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.45 * len(rows)), sharey=True)
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        ax.plot([100 * v for v in r["values"].values()], [y] * r["n"], "o", color="0.6", ms=4)
        lo, hi = r["bootstrap"]
        if math.isfinite(lo):
            ax.plot([100 * lo, 100 * hi], [y, y], "-", color="C0", lw=2)
        ax.plot([100 * r["mean"]], [y], "D", color="C0", ms=7)
        p = r.get("paired")
        if p and p["n"]:
            lo, hi = p["bootstrap"]
            if math.isfinite(lo):
                ax2.plot([100 * lo, 100 * hi], [y, y], "-", color="C1", lw=2)
            ax2.plot([100 * p["mean"]], [y], "D", color="C1", ms=7)
    ax.set_yticks(ys, [r["label"] for r in rows])
    split, metric = rows[0]["split"], rows[0]["metric"]
    ax.set_xlabel(f"{split} {metric} (×100): seeds (grey), mean and 95% bootstrap interval")
    ax2.axvline(0, color="k", lw=1)
    ax2.set_xlabel("paired difference vs direct distillation (×100), 95% bootstrap interval")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.suptitle(f"{task}: {split} {metric} over seeds")
    _save(plt, fig, path)


def _curve(values: dict) -> tuple[list[float], list[float]]:
    """{sparsity key: metric} -> sparsities ascending, metric x100 (non-finite dropped)."""
    pts = sorted((float(s), 100 * v) for s, v in values.items()
                 if isinstance(v, (int, float)) and math.isfinite(v))
    return [s for s, _ in pts], [v for _, v in pts]


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _tradeoff_figure(plt, run: dict, path: Path) -> None:
    its, sel, lam = run["iterations"], run["selection_metric"], float(run["lam"])
    fig, axes = plt.subplots(1, len(its), figsize=(max(7.5, 6.5 * len(its)), 5.2), squeeze=False)
    for ax, it in zip(axes[0], its):
        chosen, trade = float(it["chosen"]), _curve(it["tradeoff"])
        hs = ax.plot(*_curve(it["best_metric"]), "o-", color="C0", label=f"best dev {sel}")
        ax2 = ax.twinx()
        hs += ax2.plot(*trade, "s--", color="C1", label=f"{sel} + λ·s/100")
        ax.axvline(chosen, color="C3", ls=":", lw=1.5)
        if chosen in trade[0]:
            hs += ax2.plot([chosen], [trade[1][trade[0].index(chosen)]], "*", color="C3",
                           ms=16, zorder=5, label=f"chosen: {chosen:g}S")
        ax.set_xlabel("candidate sparsity (%)")
        ax.set_ylabel(f"best dev {sel} (×100)", color="C0")
        ax2.set_ylabel(f"{sel} + λ·s/100 (×100)", color="C1")
        ax.set_title(f"iteration {it['iteration']}: teacher {float(it['teacher_sparsity']):g}S"
                     f" → chose {chosen:g}S")
        ax.grid(alpha=0.3)
        ax.legend(handles=hs, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    fig.suptitle(f"{run['task']}: λ-tradeoff (λ={lam:g}, target "
                 f"{float(run.get('target_sparsity') or 0):g}S)\n{_name(run)}", fontsize=12)
    _save(plt, fig, path)


def _candidate_curves_figure(plt, run: dict, path: Path) -> None:
    """Per MiniDisc iteration, each candidate's dev metric against the step (its `history`),
    and the score of always answering the majority class (`majority_class`) as a line: a
    candidate on that line has not learnt anything yet."""
    its, sel = run["iterations"], run["selection_metric"]
    # the split the candidates were scored on: --selection_split's examples, or dev
    split = (run.get("selection") or {}).get("split", "dev")
    floor = _sel(run.get("majority_class") or {}, sel) if split == "dev" else None
    target = float(run.get("target_sparsity") or 0)
    fig, axes = plt.subplots(1, len(its), figsize=(max(7.5, 6.5 * len(its)), 5.2), squeeze=False)
    for ax, it in zip(axes[0], its):
        history = it.get("history") or []
        for i, key in enumerate(sorted({k for h in history for k in h.get(split) or {}},
                                       key=float)):
            pts = [(h["step"], 100 * h[split][key]) for h in history
                   if key in h.get(split, {})]
            ax.plot(*zip(*pts), "o-", color=f"C{i % 10}", ms=3,
                    lw=2.5 if float(key) == target else 1.2, label=f"{float(key):g}S")
        if isinstance(floor, (int, float)) and math.isfinite(floor):
            ax.axhline(100 * floor, color="k", ls="--", lw=1, label="majority class")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"{split} {sel} (×100)")
        ax.set_title(f"iteration {it['iteration']}: teacher {float(it['teacher_sparsity']):g}S"
                     f" → chose {float(it['chosen']):g}S")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", ncol=2)
    fig.suptitle(f"{run['task']}: each candidate's {split} {sel} while it trains\n"
                 f"{_name(run)}", fontsize=12)
    _save(plt, fig, path)


def _sparsity_figure(plt, task: str, rows: list[dict], sel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 5.5))
    teacher = rows[0]["model"]

    def xy(models: list[dict]) -> tuple[list[float], list[float]]:
        pts = [(_x(m, teacher), _sel(m, sel)) for m in models]
        pts = [(x, 100 * y) for x, y in pts if isinstance(y, (int, float))]
        return [x for x, _ in pts], [y for _, y in pts]

    # marker sizes shrink along the row order so that coinciding points stay visible
    for i, r in enumerate(rows):
        c, ms = f"C{i % 10}", max(5, 13 - 1.5 * i)
        if r["group"] == "teacher":
            ax.plot(*xy([r["model"]]), "*", color="k", ms=18, label="Teacher", zorder=1)
        elif r["group"] == "distill":
            ax.plot(*xy([r["model"]]), "o", color=c, ms=ms, label=r["label"], zorder=2 + i)
        elif r["group"] == "maxidisc":
            ax.plot(*xy(r["stages"]), "s-", color=c, ms=ms, zorder=2 + i,
                    label=f"{r['label']} (TA → student)")
        else:
            its = r["iterations"]
            ax.plot(*xy(its), "D-", color=c, ms=ms, zorder=2 + i,
                    label=r["label"])
            ax.plot(*_curve(its[0]["best_metric"]), "--", color=c, alpha=0.7, zorder=1,
                    label=f"{r['label']}: iter-1 best per sparsity")
    ax.set_xlabel("sparsity (%)   [layer-dropped students: % of encoder params removed]")
    ax.set_ylabel(f"dev {sel} (×100)")
    ax.set_title(f"{task}: dev {sel} vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    _save(plt, fig, path)


def figures(runs: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """λ-tradeoff and per-candidate curves per MiniDisc run, metric-vs-sparsity per task; the
    PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9})
    out, made = Path(out_dir), []
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        if run["mode"] == "minidisc" and run["iterations"]:
            made.append(out / f"lambda_tradeoff_{run['task']}_{_name(run)}.png")
            _tradeoff_figure(plt, run, made[-1])
            made.append(out / f"candidate_curves_{run['task']}_{_name(run)}.png")
            _candidate_curves_figure(plt, run, made[-1])
    for task, rows in _rows(runs).items():
        made.append(out / f"metric_vs_sparsity_{task}.png")
        _sparsity_figure(plt, task, rows, _selection(runs, task), made[-1])
    for task, rows in seed_stats(runs).items():
        if not any(r["n"] > 1 for r in rows):
            continue
        for split in dict.fromkeys(r["split"] for r in rows):
            made.append(out / f"seeds_{task}_{split}.png")
            _seed_figure(plt, task, [r for r in rows if r["split"] == split], made[-1])
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minidisc.report",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="run folders (searched recursively) or results.json")
    ap.add_argument("--out", type=Path, help="where report.md and figures go "
                    "(default: <first path's folder>/report)")
    args = ap.parse_args(argv)
    try:
        runs = collect(args.paths)
        first = Path(args.paths[0])
        out = args.out or (first if first.is_dir() else first.parent) / "report"
        md = tables(runs) + seed_tables(runs)
        pngs = figures(runs, out)
        md += "\n## Figures\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
        (out / "report.md").write_text(md, encoding="utf-8")
    except MiniDiscError as e:
        err = str(e)
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
        err = f"malformed results or unwritable --out ({type(e).__name__}: {e})"
    else:
        print(md)
        print(f"report and {len(pngs)} figures in {out}", file=sys.stderr)
        return 0
    print(f"error: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
