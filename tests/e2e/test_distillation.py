"""distill, maxidisc, minidisc and the lambda schedule on tiny fixtures; inference files."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FAST_FLAGS, make_distiller, prunable_pair, write_conll_task, write_sst2_task

from minidisc.compression.losses import align_layers, distill_loss
from minidisc.compression.schedule import candidates, choose_sparsity, sample_sandwich, tradeoff
from minidisc.main import execute, main
from minidisc.models.sparse_bert import SparseBertForSequenceClassification
from minidisc.modes.minidisc import sandwich_step
from minidisc.training.loop import Backward

# --- the schedule -----------------------------------------------------------------------


def test_lambda_zero_picks_best_metric():
    best = {50: 0.80, 60: 0.85, 70: 0.84, 80: 0.70, 90: 0.60}
    assert choose_sparsity(best, 0, 90, 0.0, is_final=False) == 60


def test_large_lambda_picks_target():
    best = {50: 0.80, 60: 0.85, 70: 0.84, 80: 0.70, 90: 0.60}
    assert choose_sparsity(best, 0, 90, 10.0, is_final=False) == 90


def test_default_lambda_tradeoff():
    best = {50: 0.80, 60: 0.81, 70: 0.80, 80: 0.79, 90: 0.70}
    # scores: 0.90, 0.93, 0.94, 0.95, 0.88
    assert choose_sparsity(best, 0, 90, 0.2, is_final=False) == 80
    assert tradeoff(0.79, 80, 0.2) == pytest.approx(0.95)


def test_sparsities_compare_as_numbers():
    best = {"85": 0.80, "9": 0.80, "90": 0.50}
    # as strings "9" > "85"; as numbers 85 > 9 and wins the tie-free tradeoff
    assert choose_sparsity(best, 0, 90, 0.2, is_final=False) == 85
    assert candidates({"9": {}, "85": {}, "90": {}, "95": {}}, 0, 0, 90) == [9, 85, 90]


def test_candidates_below_teacher_excluded_and_final_forced():
    best = {50: 0.99, 60: 0.5, 70: 0.6, 80: 0.6, 90: 0.1}
    assert choose_sparsity(best, 60, 90, 0.2, is_final=False) == 80
    assert choose_sparsity(best, 0, 90, 0.2, is_final=True) == 90
    smap = {k: {} for k in ("0", "10", "50", "60", "70", "80", "85", "90", "95")}
    assert candidates(smap, 0, 50, 90) == [50, 60, 70, 80, 85, 90]
    assert candidates(smap, 70, 50, 90) == [70, 80, 85, 90]


# --- losses -----------------------------------------------------------------------------


def test_layer_alignment_for_any_depths():
    assert align_layers(12, 12) == [(0, 0), (2, 2), (4, 4), (6, 6), (8, 8), (10, 10), (12, 12)]
    assert align_layers(4, 6) == [(0, 0), (1, 2), (2, 3), (3, 4), (4, 6)]
    assert align_layers(4, 12) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert align_layers(3, 6) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    for s, t in ((4, 6), (4, 12), (3, 6), (6, 6), (1, 12)):
        pairs = align_layers(s, t)
        assert pairs[0] == (0, 0) and pairs[-1] == (s, t)


def test_sandwich_step_backpropagates_the_mean_of_per_sparsity_losses():
    from minidisc.data.tasks import TASKS

    teacher, student = prunable_pair()
    ids = torch.randint(5, 60, (4, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids), "labels": torch.tensor([0, 1, 1, 0])}
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    cands = [50.0, 70.0, 90.0]
    step = sandwich_step(student, make_distiller(TASKS["sst2"], teacher), cands)
    total = step(batch, Backward.plain(student))
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)

    with torch.no_grad():
        t_out = teacher(**inputs, output_hidden_states=True)
    each = []
    for s in cands:
        student.sparsify(s)
        each.append(distill_loss("sparse", student(**inputs, output_hidden_states=True), t_out,
                                 batch, temperature=1.0, regression=False, token_level=False))
    student.sparsify(None)
    mean = torch.stack(each).mean()
    mean.backward()
    assert total == pytest.approx(mean.item(), rel=1e-6)
    assert len({round(x.item(), 6) for x in each}) == 3
    for n, p in student.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-7)
    assert student.bert.active is None


def test_sampled_sandwich_keeps_extremes_and_is_seeded():
    import random

    cands = [50.0, 60.0, 70.0, 80.0, 85.0, 90.0]
    a = [sample_sandwich(cands, 2, random.Random(3)) for _ in range(5)]
    b = [sample_sandwich(cands, 2, random.Random(3)) for _ in range(5)]
    assert a == b
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        picked = sample_sandwich(cands, 1, rng)
        assert picked[0] == 50 and picked[-1] == 90 and len(picked) == 3
        seen.add(picked[1])
    assert seen == {60.0, 70.0, 80.0, 85.0}
    assert sample_sandwich(cands, None, rng) == cands
    assert sample_sandwich(cands, 4, rng) == cands


def test_candidates_above_target_follow_the_reference():
    smap = {k: {} for k in ("0", "50", "60", "70", "80", "85", "90", "95")}
    assert candidates(smap, 0, 50, 90, above_target=True) == [50, 60, 70, 80, 85, 90, 95]
    best = {50: 0.5, 70: 0.6, 90: 0.6, 95: 0.61}
    # 95 wins the tradeoff (0.80), so the reference keeps the target instead
    assert choose_sparsity(best, 0, 90, 0.2, is_final=False, above_target=True) == 90
    assert choose_sparsity(best, 0, 90, 0.2, is_final=False) == 90
    best[70] = 0.70
    assert choose_sparsity(best, 0, 90, 0.2, is_final=False, above_target=True) == 70


def test_distill_loss_zero_for_identical_models():
    teacher, _ = prunable_pair()
    ids = torch.randint(5, 60, (2, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids), "labels": torch.tensor([0, 1])}
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        out = teacher(**inputs, output_hidden_states=True)
        reg = distill_loss("sparse", out, out, batch, temperature=1.0, regression=True,
                           token_level=False)
    assert reg.item() == pytest.approx(0.0, abs=1e-7)


# --- end to end ---------------------------------------------------------------------------


def _run(*args):
    return execute([*args, *FAST_FLAGS])


@pytest.fixture(scope="module")
def prunable(tiny_bert, tmp_path_factory):
    """A tiny teacher finetuned and sparsified on the sentiment fixture."""
    root = tmp_path_factory.mktemp("distill")
    data = write_sst2_task(root / "data")
    out = root / "out"
    common = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir", str(out)]
    _run("--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert),
         "--num_train_epochs", "30")
    _run("--mode", "sparsify", *common, "--teacher_model_path",
         str(out / "sparsebert_cls_finetune_sst2"))
    return root, common, out / "sparsebert_cls_sparsify_sst2"


def _top_tradeoff(iteration: dict, lam: float) -> float:
    """The paper's rule on an iteration's record, written out: the candidate with the highest
    best metric + λ·s/100 (ties: the sparser), after checking the recorded tradeoffs."""
    best = {float(k): v for k, v in iteration["best_metric"].items()}
    trade = {float(k): v for k, v in iteration["tradeoff"].items()}
    assert trade == {s: pytest.approx(m + lam * s / 100) for s, m in best.items()}
    return max(s for s, t in trade.items() if t == max(trade.values()))


def test_minidisc_keeps_the_target_when_the_candidates_score_alike(prunable):
    """The fixture task is learnt (near) perfectly at every candidate sparsity, so λ's bonus
    for sparsity decides: the tradeoff keeps the target, no TA, and without --search_epochs
    no second iteration follows. A run that keeps a TA: tests/e2e/test_pinned_loss.py."""
    root, common, teacher = prunable
    res = _run("--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
               "--num_train_epochs", "2", "--log_interval", "4", "--lam", "0.2")
    run = root / "out" / "sparsebert_cls_minidisc_90S_lam0.2_sst2"
    saved = json.loads((run / "results.json").read_text())
    its = saved["iterations"]
    assert its[0]["candidates"] == ["50", "60", "70", "80", "85", "90"]
    assert its[0]["chosen"] == _top_tradeoff(its[0], 0.2) == 90
    assert saved["teacher_assistants"] == [] and len(its) == 1
    student = SparseBertForSequenceClassification.from_pretrained(run / its[0]["path"])
    teacher_params = saved["teacher"]["params"]["encoder"]
    assert student.config.sparsity == 90
    assert saved["final"]["sparsity"] == 90 and saved["final"]["path"] == its[0]["path"]
    assert res["final"]["params"]["encoder"] < teacher_params * 0.2


@pytest.mark.parametrize("spec", ["1L", "90S"])
def test_distill_layer_and_sparsity_students(prunable, spec):
    root, common, teacher = prunable
    res = _run("--mode", "distill", *common, "--teacher_model_path", str(teacher),
               "--layer_or_sparsity", spec, "--num_train_epochs", "1", "--log_interval", "3")
    model = SparseBertForSequenceClassification.from_pretrained(
        root / "out" / f"sparsebert_cls_distill_{spec}_sst2" / "model")
    if spec == "1L":
        assert model.config.num_hidden_layers == 1
    else:
        assert model.config.sparsity == 90
    # the final model is the best dev checkpoint the loop saw, restored
    assert res["final"]["dev"]["acc"] == pytest.approx(res["train"]["best_score"])


@pytest.mark.parametrize("path, expect", [("2,1L", ["2L", "1L"]), ("80,90S", ["80S", "90S"])])
def test_maxidisc_chains_stages(prunable, path, expect):
    root, common, teacher = prunable
    res = _run("--mode", "maxidisc", *common, "--teacher_model_path", str(teacher),
               "--layer_or_sparsity_path", path, "--num_train_epochs", "1",
               "--log_interval", "3", "--model_type", "kdbert_cls")
    assert [s["spec"] for s in res["stages"]] == expect
    run = root / "out" / f"kdbert_cls_maxidisc_{path.replace(',', '-')}_sst2"
    for stage in res["stages"]:
        cfg = json.loads((run / stage["path"] / "config.json").read_text())
        if path.endswith("S"):
            assert cfg["sparsity"] == float(stage["spec"][:-1])
        else:
            assert cfg["num_hidden_layers"] == int(stage["spec"][:-1])


@pytest.mark.parametrize("spec, message", [
    ("90S", "not prunable"),
    ("7L", "the teacher has 2 layers"),
    ("33S", "not in the sparsity map"),
])
def test_bad_student_specs_exit_2(prunable, tmp_path, capsys, spec, message):
    root, common, teacher = prunable
    teacher_path = root / "out" / "sparsebert_cls_finetune_sst2" if spec == "90S" else teacher
    out = tmp_path / "out"
    args = ["--mode", "distill", *common[:4], "--output_dir", str(out), "--teacher_model_path",
            str(teacher_path), "--layer_or_sparsity", spec, "--use_cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


# --- inference files ----------------------------------------------------------------------


def _write_mnli(folder):
    folder.mkdir(parents=True)
    head = ["index", "promptID", "pairID", "genre", "s1_bp", "s2_bp", "s1_p", "s2_p",
            "sentence1", "sentence2"]
    labels = ["entailment", "neutral", "contradiction"]
    rows = [(f"the film was {w}", "a movie", labels[i % 3])
            for i, w in enumerate(["good", "bad", "dull", "great", "sad", "fine"])]

    def line(i, a, b, extra):
        return "\t".join([str(i), "1", "1", "fiction", "x", "x", "x", "x", a, b, *extra])

    for split in ("train", "dev_matched", "dev_mismatched"):
        text = ["\t".join([*head, "label1", "gold_label"])]
        text += [line(i, a, b, [y, y]) for i, (a, b, y) in enumerate(rows)]
        (folder / f"{split}.tsv").write_text("\n".join(text) + "\n")
    for split in ("test_matched", "test_mismatched"):
        text = ["\t".join(head)] + [line(i, a, b, []) for i, (a, b, _) in enumerate(rows)]
        (folder / f"{split}.tsv").write_text("\n".join(text) + "\n")


def _write_stsb(folder):
    folder.mkdir(parents=True)
    head = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
            "sentence1", "sentence2"]
    rows = [("the film was good", "a good movie", "4.2"), ("bad", "the plot", "0.4"),
            ("the cast", "the cast is fine", "3.0"), ("dull", "happy", "1.5")]

    def line(i, a, b):
        return "\t".join([str(i), "main", "f", "2012", "0", "none", "none", a, b])

    for split in ("train", "dev"):
        text = ["\t".join([*head, "score"])] + [line(i, a, b) + f"\t{y}"
                                                for i, (a, b, y) in enumerate(rows)]
        (folder / f"{split}.tsv").write_text("\n".join(text) + "\n")
    text = ["\t".join(head)] + [line(i, a, b) for i, (a, b, _) in enumerate(rows)]
    (folder / "test.tsv").write_text("\n".join(text) + "\n")


@pytest.mark.parametrize("task", ["mnli", "stsb", "conll"])
def test_infer_writes_task_files(task, tiny_bert, tmp_path):
    data = tmp_path / "data"
    if task == "mnli":
        _write_mnli(data / "mnli")
    elif task == "stsb":
        _write_stsb(data / "stsb")
    else:
        write_conll_task(data)
    out = tmp_path / "out"
    res = _run("--mode", "finetune", "--task_name", task, "--data_dir", str(data),
               "--output_dir", str(out), "--teacher_model_path", str(tiny_bert),
               "--num_train_epochs", "1", "--do_train", "--do_infer", "--do_test")
    kind = "ner" if task == "conll" else "cls"
    run = out / f"sparsebert_{kind}_finetune_{task}"
    if task == "mnli":
        assert "dev" not in res["final"] and all(
            "acc" in res["final"][s] for s in ("dev_matched", "dev_mismatched"))
        for name in ("MNLI-m.tsv", "MNLI-mm.tsv"):
            lines = (run / name).read_text().splitlines()
            assert lines[0] == "index\tprediction" and len(lines) == 7
            assert {x.split("\t")[1] for x in lines[1:]} <= {
                "entailment", "neutral", "contradiction"}
    elif task == "stsb":
        lines = (run / "STS-B.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction"
        assert all(0.0 <= float(x.split("\t")[1]) <= 5.0 for x in lines[1:])
        assert set(res["final"]["dev"]) == {"pearson", "spearman", "corr"}
    else:
        assert "f1" in res["final"]["test"]
        blocks = (run / "conll_test_predictions.txt").read_text().strip().split("\n\n")
        assert len(blocks) == 12
        first = blocks[0].splitlines()
        assert [len(x.split()) for x in first] == [3, 3, 3]
        assert first[0].split()[:2] == ["john", "B-PER"]


@pytest.mark.parametrize("path, message", [("90,80S", "less sparse than its teacher (90S)"),
                                           ("1,2L", "the teacher has 1 layers")])
def test_bad_maxidisc_path_exits_2_before_training(prunable, tmp_path, capsys, path, message):
    _, common, teacher = prunable
    out = tmp_path / "out"
    args = ["--mode", "maxidisc", *common[:4], "--output_dir", str(out), "--teacher_model_path",
            str(teacher), "--layer_or_sparsity_path", path, "--use_cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


# --- parity and the trial's own choices ---------------------------------------------------


def test_ftbert_never_runs_the_teacher():
    from minidisc.data.tasks import TASKS

    class Refuses(torch.nn.Module):
        def forward(self, **_):
            raise AssertionError("the teacher ran")

    _, student = prunable_pair()
    distiller = make_distiller(TASKS["sst2"], Refuses(), model_type="ftbert_cls")
    ids = torch.randint(5, 60, (2, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids), "labels": torch.tensor([0, 1])}
    b, inputs, t_out = distiller.split(batch)
    assert t_out is None
    loss = distiller.loss(student.train(), inputs, t_out, b)
    student.eval()
    expected = torch.nn.functional.cross_entropy(student(**inputs).logits, batch["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("model_type", ["kdbert_cls", "pkdbert_cls"])
def test_minidisc_with_kd_and_pkd_students(prunable, model_type):
    root, common, teacher = prunable
    res = _run("--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
               "--model_type", model_type, "--num_train_epochs", "1", "--log_interval", "3",
               "--target_iteration", "1")
    assert res["final"]["sparsity"] == 90
    assert res["iterations"][0]["chosen"] == 90


def test_minidisc_reference_sandwich_and_sampled_sandwich(prunable):
    root, common, teacher = prunable
    res = _run("--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
               "--num_train_epochs", "1", "--log_interval", "3", "--candidates_above_target",
               "--sandwich_k", "1", "--use_bf16", "--model_suffix", "ref",
               "--final_sandwich", "target")
    first = res["iterations"][0]
    assert first["candidates"] == ["50", "60", "70", "80", "85", "90", "95"]
    assert set(first["best_metric"]) == set(first["candidates"])
    assert 50 <= first["chosen"] <= 90
    last = res["iterations"][-1]
    if len(res["iterations"]) == 2:  # the final iteration only trains and scores the target
        assert list(last["best_metric"]) == ["90"] and last["candidates"] == ["90"]
    assert 0 < res["eval_share"] < 1 and res["eval_time_s"] > 0


def test_final_student_is_the_best_target_model_of_the_trial(prunable, monkeypatch):
    """Iteration 1 trains a 90% model that scores better than iteration 2's: it is kept."""
    from minidisc.modes.common import Evaluator
    from minidisc.training.evaluate import Outputs

    def scripted(self, model):
        bert = getattr(model, "bert", None)
        s = bert.active_sparsity if bert is not None else 0.0
        first_iteration = float(model.config.sparsity or 0) == 0
        score = {70.0: 0.8, 90.0: 0.7 if first_iteration else 0.6}.get(s, 0.5)
        n = len(self.select_split.examples)
        return {"acc": score}, Outputs([0] * n, [0.0] * n)

    monkeypatch.setattr(Evaluator, "evaluate_outputs", scripted)
    root, common, teacher = prunable
    res = _run("--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
               "--num_train_epochs", "1", "--log_interval", "3", "--model_suffix", "best")
    assert res["teacher_assistants"] == [70.0]
    assert res["final_from_iteration"] == 1
    run = root / "out" / "sparsebert_cls_minidisc_best_90S_lam0.2_sst2"
    assert res["final"]["path"] == "student_iter_1"
    saved = SparseBertForSequenceClassification.from_pretrained(run / "student_iter_1")
    assert saved.config.sparsity == 90
    assert (run / "ckpt_iter_2").is_dir()


def test_candidates_scored_every_nth_evaluation_on_equal_footing(prunable):
    """--candidate_eval_every 3: the target at every evaluation, the others at the 1st, 4th,
    ... and the last; each candidate's best (the target's included) over those only."""
    root, common, teacher = prunable
    res = execute(["--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
                   *FAST_FLAGS, "--num_train_epochs", "3", "--log_interval", "2",
                   "--final_sandwich", "target", "--candidate_eval_every", "3",
                   "--model_suffix", "every3"])
    it = res["iterations"][0]
    history = it["history"]
    assert len(history) >= 5
    last_step = history[-1]["step"]
    full = [h for h in history if (h["step"] // 2 - 1) % 3 == 0 or h["step"] == last_step]
    assert 2 <= len(full) < len(history)
    for h in history:
        expect = it["candidates"] if h in full else ["90"]
        assert list(h["dev"]) == expect
    for key in it["candidates"]:
        assert it["best_metric"][key] == max(h["dev"][key] for h in full)
    assert it["chosen"] == _top_tradeoff(it, 0.2)


def test_search_epochs_shortens_the_search_and_the_final_iteration_still_runs(prunable):
    """--search_epochs: iteration 1 trains half the steps; it keeps the target (a large
    lambda), so the final iteration distils the target from the same teacher for the full
    epochs, and the better of the two target models is the student."""
    root, common, teacher = prunable
    res = _run("--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
               "--num_train_epochs", "2", "--search_epochs", "1", "--log_interval", "3",
               "--lam", "10", "--final_sandwich", "target", "--model_suffix", "search")
    search, final = res["iterations"]
    assert search["chosen"] == final["chosen"] == 90 and res["teacher_assistants"] == []
    assert (search["final"], final["final"]) == (False, True)
    assert (search["epochs"], final["epochs"]) == (1, 2)
    assert 2 * search["steps"] == final["steps"]
    assert search["candidates"] == ["50", "60", "70", "80", "85", "90"]
    assert final["teacher_sparsity"] == 0 and final["candidates"] == ["90"]
    scores = [search["best_metric"]["90"], final["best_metric"]["90"]]
    assert res["final_from_iteration"] == (2 if scores[1] > scores[0] else 1)
    run = root / "out" / "sparsebert_cls_minidisc_search_90S_lam10_sst2"
    assert (run / res["final"]["path"] / "config.json").is_file()
    assert res["final"]["sparsity"] == 90
    log = (run / "run.log").read_text()
    assert f"search for a TA train 1 epochs = {search['steps']} steps" in log
    assert "the final iteration distils the target from the same teacher" in log


def test_without_search_epochs_a_kept_target_ends_the_trial(prunable):
    root, common, teacher = prunable
    res = _run("--mode", "minidisc", *common, "--teacher_model_path", str(teacher),
               "--num_train_epochs", "1", "--log_interval", "3", "--lam", "10",
               "--model_suffix", "nosearch")
    (only,) = res["iterations"]
    assert only["chosen"] == 90 and not only["final"] and res["final_from_iteration"] == 1
    # no final iteration follows, and the log does not say one does (it used to)
    log = (root / "out" / "sparsebert_cls_minidisc_nosearch_90S_lam10_sst2" / "run.log"
           ).read_text(encoding="utf-8")
    assert "iteration 1: chose the target 90S: no TA" in log
    assert "the final iteration" not in log


def test_the_line_after_an_iteration_says_what_follows():
    from minidisc.compression.schedule import after_line

    line = "the final iteration distils the target from the same teacher (the search ran 1 epochs)"
    assert after_line(1, 90.0, 90.0, False, 1.0, 1.0) == line  # a shortened search kept it
    assert after_line(1, 90.0, 90.0, False, None, 2.0) is None  # that search ended the trial
    assert after_line(1, 70.0, 90.0, False, 1.0, 1.0) is None  # a TA: its next iteration
    assert after_line(2, 90.0, 90.0, True, 1.0, 2.0) is None  # the final one itself
