"""minidisc.report over seeds, on hand-written results.json files: runs that differ only in
--seed are grouped (never "newest wins"), with mean ± std, 95% intervals and paired
differences against direct distillation, checked against values computed by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minidisc.report import (
    bootstrap_interval,
    collect,
    figures,
    main,
    seed_stats,
    seed_tables,
    t_interval,
    tables,
)

T975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom


def _model(sparsity: float, dev: float, test: float) -> dict:
    return {"path": "m", "sparsity": float(sparsity), "num_layers": 6,
            "params": {"encoder": 1000, "total": 2000},
            "dev": {"acc": dev}, "test": {"acc": test}}


def _write(root: Path, name: str, mode: str, seed: int, test: float, mtime: float = 1000.0,
           epochs: int = 1, **body) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    f = folder / "results.json"
    args = {"seed": seed, "num_train_epochs": epochs, "model_suffix": f"{name}-s{seed}",
            "output_dir": str(root), "lam": 0.2}
    f.write_text(json.dumps({"mode": mode, "task": "sst2", "selection_metric": "acc",
                             "teacher": _model(0, 0.9, 0.9), **body,
                             "final": _model(90, test - 0.05, test), "args": args}))
    os.utime(f, (mtime, mtime))


def _distill(root: Path, name: str, seed: int, test: float, **kw) -> None:
    _write(root, name, "distill", seed, test, student_spec="90S", **kw)


def _maxidisc(root: Path, name: str, seed: int, test: float) -> None:
    _write(root, name, "maxidisc", seed, test, path="80,90S",
           stages=[_model(80, 0.8, 0.8), _model(90, test - 0.05, test)])


@pytest.fixture
def runs(tmp_path: Path) -> list[dict]:
    for seed, d, m in ((1, 0.80, 0.81), (2, 0.82, 0.85), (3, 0.84, 0.86)):
        _distill(tmp_path, f"d{seed}", seed, d, mtime=2000.0)
        _maxidisc(tmp_path, f"m{seed}", seed, m)
    _distill(tmp_path, "d2old", 2, 0.50, mtime=1000.0)  # an older run of seed 2: replaced
    for seed, d in ((1, 0.80), (2, 0.84)):  # compute-matched: two epochs, two seeds
        _distill(tmp_path, f"e{seed}", seed, d, epochs=2)
    for seed, tas in ((1, [80.0]), (2, [])):
        _write(tmp_path, f"mini{seed}", "minidisc", seed, 0.83, lam=0.2, target_sparsity=90,
               teacher_assistants=tas, iterations=[{
                   "iteration": 1, "teacher_sparsity": 0.0, "chosen": 80.0,
                   "best_metric": {"80": 0.8, "90": 0.78},
                   "tradeoff": {"80": 0.96, "90": 0.96}, **_model(80, 0.8, 0.8)}])
    return collect([tmp_path])


def _row(stats: list[dict], label: str, split: str = "test") -> dict:
    (row,) = [r for r in stats if r["label"] == label and r["split"] == split]
    return row


def test_means_intervals_and_paired_differences_by_hand(runs):
    stats = seed_stats(runs)["sst2"]
    distill = _row(stats, "Distill 90S, num_train_epochs=1")
    assert distill["values"] == {1: 0.80, 2: 0.82, 3: 0.84}  # seed 2: the newer run
    assert distill["n"] == 3
    assert distill["mean"] == pytest.approx(0.82) and distill["std"] == pytest.approx(0.02)
    half = T975_2 * 0.02 / 3 ** 0.5
    assert distill["t"] == pytest.approx((0.82 - half, 0.82 + half))
    # 3 values: each extreme is the whole resample 1/27 = 3.7% > 2.5% of the time
    assert distill["bootstrap"] == pytest.approx((0.80, 0.84))

    path = _row(stats, "MaxiDisc 80→90S")
    p = path["paired"]  # 0.81-0.80, 0.85-0.82, 0.86-0.84
    assert p["against"] == "Distill 90S, num_train_epochs=1" and p["seeds"] == [1, 2, 3]
    assert p["mean"] == pytest.approx(0.02) and p["std"] == pytest.approx(0.01)
    assert p["t"] == pytest.approx((0.02 - T975_2 * 0.01 / 3 ** 0.5,
                                    0.02 + T975_2 * 0.01 / 3 ** 0.5))
    assert p["bootstrap"] == pytest.approx((0.01, 0.03))

    matched = _row(stats, "Distill 90S, num_train_epochs=2")
    assert matched["bootstrap"] == pytest.approx((0.80, 0.84))  # two values: the extremes
    assert matched["paired"]["seeds"] == [1, 2]  # paired on the seeds both have
    assert matched["paired"]["mean"] == pytest.approx((0.80 - 0.80 + 0.84 - 0.82) / 2)
    mini = _row(stats, "MiniDisc λ=0.2, target 90S")
    assert mini["tas"] == {1: "80S", 2: "none"} and mini["std"] == pytest.approx(0)
    assert _row(stats, "MaxiDisc 80→90S", "dev")["mean"] == pytest.approx(
        (0.81 + 0.85 + 0.86) / 3 - 0.05)


def test_intervals_alone():
    assert bootstrap_interval([1.0, 3.0]) == (1.0, 3.0)
    assert bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert all(v != v for v in bootstrap_interval([1.0]))  # nan below two values
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - T975_2 / 3 ** 0.5, 2 + T975_2 / 3 ** 0.5))
    wide = bootstrap_interval([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert 0.1 < wide[0] < 0.5 < wide[1] < 0.9


def test_tables_show_every_seed_and_the_summary(runs):
    md = tables(runs) + seed_tables(runs)
    for seed in (1, 2, 3):  # one row per seed, not the newest of them
        assert f"| MaxiDisc 80→90S · seed {seed} |" in md
    assert "· seed 2 | 37.00" not in md  # (the replaced run: 0.50 - 0.05 dev)
    assert "| **acc (dev)** | acc (test) |" in md  # --do_test's split beside dev
    assert "| MaxiDisc 80→90S · seed 1 | 76.00 | 81.00 |" in md
    test = md.split("## sst2: test acc over seeds", 1)[1].split("\n## ", 1)[0]
    line = next(x for x in test.splitlines() if x.startswith("| MaxiDisc 80→90S |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == ["84.00 ± 2.65 (3)", "[81.00, 86.00]", "[77.43, 90.57]"]
    assert cells[4:9] == ["Distill 90S, num_train_epochs=1", "2.00 ± 1.00 (3)",
                          "[1.00, 3.00]", "[-0.48, 4.48]", "1, 2, 3"]
    assert "| MiniDisc λ=0.2, target 90S | 83.00 ± 0.00 (2) |" in test
    assert "1: 80S, 2: none |" in test


def test_main_writes_seed_figures(runs, tmp_path, capsys):
    folder = Path(runs[0]["_file"]).parent.parent
    out = tmp_path / "rep"
    assert main([str(folder), "--out", str(out)]) == 0
    assert "over seeds" in capsys.readouterr().out
    pngs = {p.name for p in out.glob("seeds_*.png")}
    assert pngs == {"seeds_sst2_dev.png", "seeds_sst2_test.png"}
    assert (out / "seeds_sst2_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures(runs, tmp_path / "again")
