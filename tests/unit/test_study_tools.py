"""The SST-2 study's tools on hand-made inputs: the subset split keeps selection sentences out
of training (SST-2's train holds their sub-phrases), and the endpoints (Spearman ρ, regret)
match values computed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import ROOT

from minidisc.report import collect


def _load(name: str):
    """A benchmarks/ module from the checkout (benchmarks/ is not installed: CI runs the
    suite against the installed package with the checkout off the import path)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


subset, study = _load("sst2_subset"), _load("study_sst2")
split_rows, subset_main = subset.split_rows, subset.main
endpoints, figure1_points = study.endpoints, study.figure1_points
rho_with_interval = study.rho_with_interval


def test_selection_sentences_and_their_phrases_stay_out_of_training():
    sentences = [f"the film number {i} is good and warm" for i in range(20)]
    phrases = [p for s in sentences for p in (s, s.split(" is ")[0], "good and warm", "warm")]
    rows = [(p, str(i % 2)) for i, p in enumerate(phrases)]
    selection, train, dropped = split_rows(rows, n_train=10, n_selection=5, seed=1)
    assert len(selection) == 5 and len(train) == 10 and dropped > 0
    assert all(s in sentences for s, _ in selection)  # maximal rows: whole sentences
    for t, _ in train:
        assert not any(f" {t} " in f" {s} " for s, _ in selection), t
    assert {"good and warm", "warm"}.isdisjoint(t for t, _ in train)  # spans of a selection row


def test_subset_bad_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nok\t1\nbad row\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    assert subset_main(["--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'train.tsv'}:3: expected 'sentence<TAB>0|1'"]
    assert not (tmp_path / "o").exists()


def _model(s: float, sel: float, rep: float | None = None) -> dict:
    out = {"path": "m", "sparsity": s, "num_layers": 6, "dev": {"acc": sel}}
    if rep is not None:
        out["test"] = {"acc": rep}
    return out


def _write(root: Path, name: str, seed: int, **body) -> None:
    (root / name).mkdir(parents=True)
    body = {"task": "custom", "selection_metric": "acc", "teacher": _model(0, 0.85),
            "args": {"seed": seed, "lam": 0.2}, "wall_time_s": 100.0, **body}
    (root / name / "results.json").write_text(json.dumps(body))


@pytest.fixture
def study(tmp_path: Path) -> list[dict]:
    # per seed: TA (selection acc of the TA, student selection acc, student reported acc)
    paths = {1: {50: (0.80, 0.70, 0.72), 80: (0.78, 0.74, 0.71)},
             2: {50: (0.81, 0.73, 0.75), 80: (0.77, 0.72, 0.76)}}
    for seed, tas in paths.items():
        for ta, (ta_sel, sel, rep) in tas.items():
            stages = [{"train": {"steps": 10}, **_model(ta, ta_sel)},
                      {"train": {"steps": 10}, **_model(90, sel, rep)}]
            _write(tmp_path, f"p{ta}s{seed}", seed, mode="maxidisc", path=f"{ta},90S",
                   stages=stages, final=_model(90, sel, rep))
        _write(tmp_path, f"m{seed}", seed, mode="minidisc", lam=0.2, target_sparsity=90,
               teacher_assistants=[80.0], wall_time_s=150.0,
               iterations=[{"steps": 10, "candidates": ["50", "80", "90"]},
                           {"steps": 20, "candidates": ["80", "90"]}],
               final=_model(90, 0.7, {1: 0.73, 2: 0.70}[seed]))
    return collect([tmp_path])


def test_endpoints_by_hand(study):
    pts = figure1_points(study)
    # tradeoff = TA selection acc + 0.2 * TA / 100
    assert [round(p["tradeoff"], 4) for p in pts] == [0.9, 0.94, 0.91, 0.93]
    # pooled ranks: tradeoff (1, 4, 2, 3) vs student (2, 1, 3, 4): rho = 1 - 6*12/(4*15)
    rho = rho_with_interval({s: [(p["tradeoff"], p["student_rep"]) for p in pts
                                 if p["seed"] == s] for s in (1, 2)})
    assert rho["rho"] == pytest.approx(1 - 6 * 12 / 60) and rho["seeds"] == 2
    md = endpoints(study)
    line = next(x for x in md.splitlines() if x.startswith("| MiniDisc λ=0.2"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # chosen on selection: seed 1 path 80 (0.74 -> reported 0.71), seed 2 path 50 (0.75);
    # regrets 0.73-0.71 = +2, 0.70-0.75 = -5; oracle: 0.73-0.72 = +1, 0.70-0.76 = -6
    assert cells[1] == f"-1.50 ± {(2 * 3.5 ** 2) ** 0.5:.2f} (2)"
    assert cells[2] == "[-5.00, 2.00]"
    assert cells[4] == f"-2.50 ± {(2 * 3.5 ** 2) ** 0.5:.2f} (2)"
    # cost: a path = 20 steps, 20 student passes; MiniDisc = 30 steps, 10*3 + 20*2 = 70 passes
    assert cells[7] == "80S×2" and cells[8] == "3.50" and cells[9] == "1.50"
    cost = next(x for x in md.split("## Cost")[1].splitlines() if x.startswith("| MiniDisc"))
    assert [c.strip() for c in cost.strip("|").split("|")][1:] == ["2", "1.50", "3.50", "1.50"]
