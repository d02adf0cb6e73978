"""The model card every run writes into its final checkpoint: YAML metadata and text, field by
field, against the run's own record; the load snippet it gives works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_mode, write_sst2_task
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from minidisc import card


@pytest.fixture(scope="module")
def chain(tiny_bert, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """finetune -> sparsify -> distill 90S on the fixture task; the distill run folder, the
    output folder and the distill arguments."""
    root = tmp_path_factory.mktemp("card")
    data = write_sst2_task(root / "data")
    out = root / "out"
    run_mode("finetune", data, out, tiny_bert, "--do_train")
    run_mode("sparsify", data, out, out / "sparsebert_cls_finetune_sst2")
    argv = ["--layer_or_sparsity", "90S", "--do_train"]
    run_mode("distill", data, out, out / "sparsebert_cls_sparsify_sst2", *argv)
    return out / "sparsebert_cls_distill_90S_sst2", out, argv


def test_card_of_a_distilled_student_field_by_field(chain, tiny_bert):
    run, out, argv = chain
    results = json.loads((run / "results.json").read_text())
    ckpt = run / results["final"]["path"]
    loaded = ModelCard.load(ckpt / "README.md")
    meta = loaded.data.to_dict()
    md = meta["minidisc"]
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert "base_model" not in meta  # a local path is no hub id: named in the text only
    assert md["base_model"] == str(tiny_bert.resolve())
    assert md["mode"] == "distill" and md["task"] == "sst2" and md["labels"] == ["0", "1"]
    assert md["sparsity"] == 90.0 == results["final"]["sparsity"]
    assert md["encoder_params"] == results["final"]["params"]["encoder"]
    assert md["total_params"] == results["final"]["params"]["total"]
    assert md["teacher_encoder_params"] == results["teacher"]["params"]["encoder"]
    assert md["encoder_params_kept"] == pytest.approx(
        md["encoder_params"] / md["teacher_encoder_params"]) and md["encoder_params_kept"] < 0.5
    assert md["teacher_assistants"] == []
    assert md["path"] == [f"{tiny_bert.resolve()} (base model)",
                          "sparsebert_cls_finetune_sst2 (finetune, 0%)",
                          "sparsebert_cls_sparsify_sst2 (sparsify, 0%)",
                          "sparsebert_cls_distill_90S_sst2 (distill, 90%)"]
    assert md["command"].startswith("python run.py --mode distill --task_name sst2 ")
    assert md["command"].endswith(" ".join(argv))
    assert md["git_commit"] == results["provenance"]["git_commit"]
    assert md["versions"]["torch"] == results["provenance"]["torch"]
    assert md["latency"] is None
    [entry] = meta["model-index"]
    assert entry["name"] == "sparsebert_cls_distill_90S_sst2"
    [result] = entry["results"]
    assert result["dataset"]["split"] == "dev" and result["metrics"] == [
        {"type": "acc", "value": results["final"]["dev"]["acc"]}]

    text = loaded.text
    assert text.lstrip().startswith("# sparsebert_cls_distill_90S_sst2")
    assert f"| dev | acc | {100 * results['final']['dev']['acc']:.2f} |" in text
    assert "trust_remote_code=True" in text and "runs the Python files" in text
    assert f"{100 * md['encoder_params_kept']:.1f}% of the teacher's" in text
    # the snippet the card gives loads the folder
    model = AutoModelForSequenceClassification.from_pretrained(ckpt, trust_remote_code=True)
    assert model.config.sparsity == 90


def test_every_final_checkpoint_gets_one_and_evaluated_teachers_none(chain, tmp_path):
    _, out, _ = chain
    for run in ("sparsebert_cls_finetune_sst2", "sparsebert_cls_sparsify_sst2"):
        assert (out / run / "model" / "README.md").is_file(), run
    # a final path outside the run folder (finetune without --do_train) is left alone
    outside = {"final": {"path": str(out / "sparsebert_cls_finetune_sst2" / "model")}}
    assert card.final_checkpoint(tmp_path, outside) is None
    assert card.final_checkpoint(tmp_path, {"final": {"path": "../x"}}) is None


def test_teacher_assistants_of_each_mode():
    assert card.teacher_assistants({"mode": "minidisc", "teacher_assistants": [70, 85]}) == [
        70.0, 85.0]
    assert card.teacher_assistants({"mode": "maxidisc", "stages": [
        {"sparsity": 50}, {"sparsity": 90}]}) == [50.0]
    assert card.teacher_assistants({"mode": "distill"}) == []


def test_card_cli_adds_measured_latency_and_keeps_the_command(chain, tmp_path):
    run, _, _ = chain
    ckpt = run / json.loads((run / "results.json").read_text())["final"]["path"]
    before = ModelCard.load(ckpt / "README.md").data.to_dict()["minidisc"]["command"]
    timings = tmp_path / "latency.json"
    timings.write_text(json.dumps({"batch 32 x 128": {"int8 ms": 12.5}}))
    assert card.main([str(run), "--latency", str(timings)]) == 0
    after = ModelCard.load(ckpt / "README.md")
    assert after.data.to_dict()["minidisc"]["latency"] == {"batch 32 x 128": {"int8 ms": 12.5}}
    assert after.data.to_dict()["minidisc"]["command"] == before
    assert '"int8 ms": 12.5' in after.text
    assert card.main([str(tmp_path), "--latency", str(timings)]) == 2
