"""The demo end to end in the default suite, at its smallest setting: a tiny teacher, a
fraction of an epoch, three candidates, one timed forward (under ~30 s on 2 cores)."""

from __future__ import annotations

import json

from conftest import ROOT

from minidisc.demo import run_demo


def test_demo_runs_and_its_summary_is_the_runs(tiny_bert, tmp_path, capsys):
    out = tmp_path / "out"
    summary = run_demo(["--data_dir", str(ROOT / "datasets"), "--output_dir", str(out),
                        "--teacher_model_path", str(tiny_bert), "--epochs", "0.1",
                        "--trunc_sparsity", "85", "--latency_repeats", "1", "--use_cpu"])
    runs = ["sparsebert_cls_finetune_demo", "sparsebert_cls_minidisc_90S_lam0.2_demo",
            "sparsebert_cls_sparsify_demo"]
    assert sorted(p.name for p in out.iterdir()) == [*runs, "summary.json"]
    ft, md, _ = (json.loads((out / run / "results.json").read_text()) for run in runs)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["metric"] == "acc"
    assert summary["teacher_metric"] == ft["final"]["dev"]["acc"]
    assert summary["student_metric"] == md["final"]["dev"]["acc"]
    assert summary["teacher_assistants"] == md["teacher_assistants"]
    assert md["iterations"][0]["candidates"] == ["85", "90"]
    assert summary["student_sparsity"] == 90
    kept = summary["student_params"]["encoder"] / summary["teacher_params"]["encoder"]
    assert summary["encoder_params_kept"] == kept < 0.15
    printed = capsys.readouterr().out
    assert "MiniDisc demo on 'demo' (dev acc):" in printed
    assert f"student at 90% sparsity   {100 * summary['student_metric']:6.2f}" in printed
