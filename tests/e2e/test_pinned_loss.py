"""A pinned loss trace (as torchtune pins expected losses): a tiny seeded minidisc run, on one
thread, must reproduce these per-step training losses, so a silent change to a loss, the
training loop, the sandwich or the λ-tradeoff fails CI.

To regenerate after an intended change: run this test, check that the change explains the
new numbers, and paste the `got` lists from its failure message into EXPECTED_LOSSES.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAST_FLAGS, sentiment_rows

from minidisc.compression.sparsity_map import sparsities
from minidisc.main import execute
from minidisc.models.sparse_bert import SparseBertForSequenceClassification

# iteration -> the training loss at each step (--log_interval 1)
EXPECTED_LOSSES = {
    1: [0.00097007, 0.02540225, 0.00493563, 0.00144658, 0.00462419, 0.00631663],
    2: [0.00000938, 0.02726222, 0.00449863, 0.00185754, 0.00538565, 0.00686806],
}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float reductions in one order on every machine
    yield
    torch.set_num_threads(threads)


def _regression_task(folder):
    """The sentiment fixture as a custom regression task: its metric (Pearson/Spearman) is
    continuous, so candidates of different sparsity do not tie as accuracies do."""
    folder.mkdir()
    for split, n, seed in (("train", 96, 1), ("dev", 32, 2)):
        rows = [f"{text}\t{label:.1f}" for text, label in sentiment_rows(n, seed)]
        (folder / f"{split}.tsv").write_text("\n".join(["text\tscore", *rows]) + "\n")
    return ["--task_name", "custom", "--task_type", "regression", "--train_file",
            str(folder / "train.tsv"), "--validation_file", str(folder / "dev.tsv"),
            "--text_columns", "text", "--label_column", "score"]


def test_minidisc_loss_trace_and_a_forced_teacher_assistant(tiny_bert, tmp_path, one_thread):
    out = tmp_path / "out"
    common = [*_regression_task(tmp_path / "data"), "--output_dir", str(out), *FAST_FLAGS,
              "--seed", "3"]
    execute(["--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert),
             "--num_train_epochs", "2"])
    execute(["--mode", "sparsify", *common, "--teacher_model_path",
             str(out / "sparsebert_cls_finetune_custom")])
    # λ = 0: the tradeoff is the dev metric alone, so a denser candidate than the target
    # wins and becomes the teacher assistant of iteration 2
    res = execute(["--mode", "minidisc", *common, "--teacher_model_path",
                   str(out / "sparsebert_cls_sparsify_custom"), "--lam", "0",
                   "--num_train_epochs", "1", "--log_interval", "1"])
    first, second = res["iterations"]
    assert first["tradeoff"] == first["best_metric"]  # λ = 0
    assert first["chosen"] == 85 and res["teacher_assistants"] == [85]  # corr .5188 > .5090
    assert second["teacher_sparsity"] == 85 and second["candidates"] == ["85", "90"]
    run = out / "sparsebert_cls_minidisc_90S_lam0_custom"
    ta, student = (SparseBertForSequenceClassification.from_pretrained(run / it["path"])
                   for it in (first, second))
    assert ta.config.sparsity == 85 and student.config.sparsity == second["chosen"] == 90
    assert min(sparsities(student.config.sparsity_map)) == 90  # the TA's map, from 85 on
    got = {it["iteration"]: [round(h["loss"], 8) for h in it["history"]]
           for it in res["iterations"]}
    assert got == {k: pytest.approx(v, rel=1e-3, abs=1e-7)
                   for k, v in EXPECTED_LOSSES.items()}, got
