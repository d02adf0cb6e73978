"""minidisc.report on synthetic results.json files: table rows, figures, duplicates, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minidisc.report import collect, figures, main, tables

ENC, TOTAL = 85_000_000, 109_000_000
SPARSITIES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95]


def _dev(score: float, split: str = "dev") -> dict:
    return {split: {"acc": score - 0.02, "f1": score + 0.02, "acc_and_f1": score}}


def _model(sparsity: float, score: float, path: str = "model", layers: int = 12) -> dict:
    enc = int(ENC * (1 - sparsity / 100) * layers / 12)
    return {"path": path, "sparsity": float(sparsity), "num_layers": layers,
            "params": {"encoder": enc, "total": TOTAL - ENC + enc}, **_dev(score)}


def _train(score: float) -> dict:
    return {"best_score": score, "best_step": 10, "steps": 20, "wall_time_s": 5.0,
            "stopped_early": False, "history": [{"step": 10, "score": score,
                                                 "dev": _dev(score)["dev"]}]}


def _write(root: Path, name: str, mode: str, mtime: float | None = None, **body) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    f = folder / "results.json"
    f.write_text(json.dumps({"mode": mode, "task": body.pop("task", "mrpc"),
                             "selection_metric": "acc_and_f1", **body,
                             "wall_time_s": body.pop("wall_time_s", 120.0),
                             "args": {"lam": 0.2}}))
    if mtime is not None:
        os.utime(f, (mtime, mtime))
    return f


def _teacher() -> dict:
    return _model(0, 0.88, "/runs/sparsify/model")


def _minidisc(lam: float = 0.2) -> dict:
    def iteration(i: int, t: float, best: dict, chosen: float, score: float) -> dict:
        return {"iteration": i, "teacher_sparsity": t, "candidates": list(best),
                "best_metric": best,
                "tradeoff": {s: v + lam * float(s) / 100 for s, v in best.items()},
                "chosen": chosen, "saved_at_step": 10, "steps": 20, "wall_time_s": 50.0,
                "history": [{"step": 10, "score": 1.0, "dev": best, "chosen": chosen}],
                **_model(chosen, score, f"ckpt_iter_{i}")}

    # iteration 1 picks 80S: the best metric + lam * s / 100 (0.862 + 0.16 beats 0.80 + 0.18)
    its = [iteration(1, 0.0, dict(zip(["50", "60", "70", "80", "85", "90"],
                                      [0.87, 0.868, 0.866, 0.862, 0.835, 0.80])), 80.0, 0.86),
           iteration(2, 80.0, {"80": 0.86, "85": 0.855, "90": 0.845}, 90.0, 0.845)]
    return {"teacher": _teacher(), "lam": lam, "target_sparsity": 90.0,
            "teacher_assistants": [80.0], "iterations": its,
            "final": _model(90, 0.845, "ckpt_iter_2")}


def _maxidisc(ta: int, score: float) -> dict:
    stages = [{"stage": 1, "spec": f"{ta}S", "train": _train(0.86),
               **_model(ta, 0.86, f"stage_1_{ta}S")},
              {"stage": 2, "spec": "90S", "train": _train(score),
               **_model(90, score, "stage_2_90S")}]
    return {"teacher": _teacher(), "path": f"{ta},90S", "stages": stages,
            "final": _model(90, score, "stage_2_90S")}


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    _write(root, "ft", "finetune", final=_model(0, 0.88), train=_train(0.88), wall_time_s=600.0)
    _write(root, "sp", "sparsify", dev_before_reorder=_dev(0.88)["dev"],
           dev_after_reorder=_dev(0.88)["dev"], final=_teacher(),
           params_by_sparsity={str(s): {"encoder": int(ENC * (1 - s / 100)),
                                        "total": TOTAL - int(ENC * s / 100)}
                               for s in SPARSITIES})
    _write(root, "di", "distill", teacher=_teacher(), student_spec="90S",
           final=_model(90, 0.83), train=_train(0.83))
    _write(root, "mx80", "maxidisc", **_maxidisc(80, 0.84))
    _write(root, "mx70", "maxidisc", **_maxidisc(70, 0.835))
    _write(root, "nested/mini", "minidisc", **_minidisc())
    # left behind by the tool: an older run moved aside and a half-written one
    _write(root, "di.prev-20240101-000000", "distill", teacher=_teacher(),
           student_spec="4L", final=_model(0, 0.5, layers=4))
    _write(root, ".mini.staging-123", "minidisc", **_minidisc(lam=0.7))
    return root


def _rows(md: str, task: str = "mrpc") -> list[list[str]]:
    block = md.split(f"## {task}\n", 1)[1].split("\n\n")
    table = next(b for b in block if b.startswith("| Method"))
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_table_rows_in_paper_order_with_values(runs_dir):
    runs = collect([runs_dir])
    assert len(runs) == 6 and all("_file" in r for r in runs)
    md = tables(runs)
    header = md.split("## mrpc\n", 1)[1].split("| Method")[1].splitlines()[0]
    assert header.split("|")[1:4] == [" **acc_and_f1** ", " acc ", " f1 "]
    rows = _rows(md)
    assert [r[0] for r in rows] == ["Teacher", "Distill 90S", "MaxiDisc 70→90S",
                                    "MaxiDisc 80→90S", "MiniDisc λ=0.2 (TA 80S)"]
    teacher, distill, *_, mini = rows
    # metric x100 | acc | f1 | sparsity | layers | enc M | enc % | total M | minutes
    assert teacher == ["Teacher", "88.00", "86.00", "90.00", "0", "12", "85.00", "100.0",
                       "109.00", "10.0"]
    assert distill[1:5] == ["83.00", "81.00", "85.00", "90"]
    assert distill[6:] == ["8.50", "10.0", "32.50", "2.0"]
    assert mini[1] == "84.50" and mini[4] == "90"
    assert "4L" not in md and "λ=0.7" not in md  # .prev- and .staging folders are skipped


def test_sparsify_params_table(runs_dir):
    md = tables(collect([runs_dir]))
    assert "params kept per sparsity" in md
    part = md.split("params kept per sparsity", 1)[1]
    assert "before / after reordering: 88.00 / 88.00" in part
    assert "| 0 | 85.00 | 100.0 | 109.00 |" in part
    assert "| 95 | 4.25 | 5.0 | 28.25 |" in part
    assert part.index("| 85 |") < part.index("| 90 |") < part.index("| 95 |")  # numeric order


def test_figures_are_valid_pngs(runs_dir, tmp_path):
    made = figures(collect([runs_dir]), tmp_path / "figs")
    names = sorted(p.name for p in made)
    assert names == ["candidate_curves_mrpc_mini.png", "lambda_tradeoff_mrpc_mini.png",
                     "metric_vs_sparsity_mrpc.png"]
    for p in made:
        data = p.read_bytes()
        assert len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_candidate_curves_per_iteration_with_the_majority_floor(tmp_path, monkeypatch):
    """Each candidate's dev metric against the step, from the iterations' history; candidates
    scored less often (--candidate_eval_every) have fewer points; the floor is one line."""
    import minidisc.report as report

    body = _minidisc()
    body["majority_class"] = {"label": "1", "dev": {"acc": 0.684, "acc_and_f1": 0.748}}
    steps = [10, 20, 30, 40]
    for it, cands in zip(body["iterations"], (["50", "80", "90"], ["80", "90"])):
        it["history"] = [{"step": step, "score": 1.0, "chosen": 90.0,
                          "dev": {s: 0.7 + step / 1000 + float(s) / 10_000 for s in cands
                                  if s == "90" or step in (10, 40)}} for step in steps]
    f = _write(tmp_path, "mini", "minidisc", **body)
    drawn = []
    monkeypatch.setattr(report, "_save", lambda plt, fig, path: drawn.append(fig))
    made = figures(collect([f]), tmp_path / "figs")
    assert "candidate_curves_mrpc_mini.png" in [p.name for p in made]
    fig = next(fig for fig in drawn if "while it trains" in fig._suptitle.get_text())
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["iteration 1: teacher 0S → chose 80S",
                                               "iteration 2: teacher 80S → chose 90S"]
    for ax, cands in zip(axes, (["50", "80", "90"], ["80", "90"])):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert set(lines) == {f"{s}S" for s in cands} | {"majority class"}
        assert list(lines["90S"].get_xdata()) == steps
        assert list(lines["90S"].get_ydata()) == pytest.approx(
            [100 * (0.7 + step / 1000 + 0.009) for step in steps])
        assert list(lines["80S"].get_xdata()) == [10, 40]  # scored at the first and last only
        assert list(lines["majority class"].get_ydata()) == pytest.approx([74.8, 74.8])


def test_candidate_curves_read_the_selection_split(tmp_path, monkeypatch):
    """A --selection_split run keeps its candidates' scores under "selection": the curves are
    drawn from there and named so, without dev's majority floor (another split's rate)."""
    import minidisc.report as report

    body = _minidisc()
    body["selection"] = {"split": "selection", "selection_split": 16.0}
    body["majority_class"] = {"label": "1", "dev": {"acc": 0.684, "acc_and_f1": 0.748}}
    for it in body["iterations"]:
        it["history"] = [{"step": step, "score": 1.0, "chosen": 90.0,
                          "selection": {"90": 0.5 + step / 100}} for step in (10, 20)]
    f = _write(tmp_path, "sel", "minidisc", **body)
    drawn = []
    monkeypatch.setattr(report, "_save", lambda plt, fig, path: drawn.append(fig))
    figures(collect([f]), tmp_path / "figs")
    fig = next(fig for fig in drawn if "while it trains" in fig._suptitle.get_text())
    assert "each candidate's selection" in fig._suptitle.get_text()
    for ax in (ax for ax in fig.axes if ax.get_title()):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert set(lines) == {"90S"}
        assert list(lines["90S"].get_ydata()) == pytest.approx([60.0, 70.0])
        assert ax.get_ylabel().startswith("selection ")


def test_newest_run_wins_duplicates(tmp_path):
    teacher = _teacher()
    _write(tmp_path, "b_old", "distill", mtime=2_000, teacher=teacher, student_spec="90S",
           final=_model(90, 0.70), train=_train(0.70))
    _write(tmp_path, "a_new", "distill", mtime=3_000, teacher=teacher, student_spec="90S",
           final=_model(90, 0.80), train=_train(0.80))
    rows = _rows(tables(collect([tmp_path])))
    assert [r[0] for r in rows] == ["Teacher", "Distill 90S"]
    assert rows[1][1] == "80.00"
    assert rows[0][-1] == "–"  # a teacher known only from a distillation run has no time


def test_multi_split_task_has_a_column_per_split(tmp_path):
    final = _model(90, 0.8)
    del final["dev"]
    final.update(dev_matched={"acc": 0.8}, dev_mismatched={"acc": 0.81})
    teacher = _model(0, 0.84)
    del teacher["dev"]
    teacher["dev_matched"] = {"acc": 0.84}
    f = _write(tmp_path, "m", "distill", task="mnli", teacher=teacher, student_spec="90S",
               final=final, selection_metric="acc")
    md = tables(collect([f]))
    assert "**acc (dev_matched)** | acc (dev_mismatched)" in md
    assert _rows(md, "mnli")[0][1:3] == ["84.00", "–"]
    assert _rows(md, "mnli")[1][1:3] == ["80.00", "81.00"]


def test_results_with_nested_split_names_still_read(tmp_path):
    """results.json written before metrics were flat: final.dev.dev.acc, teacher.dev.dev."""
    def nested(model: dict) -> dict:
        return {**{k: v for k, v in model.items() if k != "dev"}, "dev": {"dev": model["dev"]}}

    _write(tmp_path, "di", "distill", teacher=nested(_teacher()), student_spec="90S",
           final=nested(_model(90, 0.83)), train=_train(0.83))
    md = tables(collect([tmp_path]))
    header = md.split("| Method")[1].splitlines()[0]
    assert header.split("|")[1:4] == [" **acc_and_f1** ", " acc ", " f1 "]
    assert [r[:4] for r in _rows(md)] == [["Teacher", "88.00", "86.00", "90.00"],
                                          ["Distill 90S", "83.00", "81.00", "85.00"]]


def test_main_writes_report_and_prints_it(runs_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(runs_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| MiniDisc λ=0.2 (TA 80S) |" in printed
    assert (out / "report.md").read_text().startswith("# MiniDisc report")
    assert {p.name for p in out.glob("*.png")} == {"candidate_curves_mrpc_mini.png",
                                                  "lambda_tradeoff_mrpc_mini.png",
                                                  "metric_vs_sparsity_mrpc.png"}


@pytest.mark.parametrize("case", ["missing", "empty", "bad_json", "no_mode", "no_final",
                                  "bad_nested"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    target = tmp_path / "runs"
    target.mkdir()
    f = target / "results.json"
    if case == "missing":
        target = tmp_path / "nope"
    elif case == "bad_json":
        f.write_text("{not json")
    elif case == "no_mode":
        f.write_text(json.dumps({"task": "mrpc"}))
    elif case == "no_final":
        f.write_text(json.dumps({"mode": "distill", "task": "mrpc", "selection_metric": "acc",
                                 "teacher": {}, "student_spec": "90S"}))
    elif case == "bad_nested":
        f.write_text(json.dumps({"mode": "minidisc", "task": "mrpc", "selection_metric": "acc",
                                 "teacher": _teacher(), "lam": 0.2, "final": _model(90, 0.8),
                                 "iterations": [{"best_metric": 5}]}))
    assert main([str(target), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out" / "report.md").exists()
