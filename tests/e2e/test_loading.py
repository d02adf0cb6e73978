"""Loading says what it loaded: a checkpoint that lacks weights the model needs, or holds body
weights it has no place for, is refused (one `error:` line, exit 2) unless the mode trains a
new task head (finetune; said in the log); every weight a model creates is initialised by its
own init, so no parameter starts as uninitialised memory."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_t5, run_mode, tiny_config, write_sst2_task
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification, BertModel, T5EncoderModel

from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError
from minidisc.main import main
from minidisc.models import load_model

SST2 = TASKS["sst2"]


def _finite(model: torch.nn.Module) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()
           or p.abs().max() > 1e3]
    assert not bad, bad


def _first_loss(model: torch.nn.Module) -> float:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (4, 12), generator=g)
    with torch.no_grad():
        return model(ids, attention_mask=torch.ones_like(ids),
                     labels=torch.tensor([0, 1, 0, 1])).loss.item()


def _drop(folder: Path, prefix: str) -> Path:
    """The checkpoint without the weights whose names start with `prefix`."""
    f = folder / "model.safetensors"
    state = load_file(f)
    save_file({k: v for k, v in state.items() if not k.startswith(prefix)}, f,
              metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def checkpoints(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    t5 = make_tiny_t5(root / "t5")  # a full T5ForConditionalGeneration
    enc = root / "t5_encoder"
    shutil.copytree(t5, enc)
    for f in enc.glob("*.safetensors"):
        f.unlink()
    T5EncoderModel.from_pretrained(t5).save_pretrained(enc)
    no_pooler = root / "no_pooler"
    shutil.copytree(tiny_bert, no_pooler)
    BertModel.from_pretrained(tiny_bert, add_pooling_layer=False).save_pretrained(no_pooler)
    head = root / "head"
    shutil.copytree(tiny_bert, head)
    BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(head)
    head_no_pooler = _drop(shutil.copytree(head, root / "head_no_pooler"), "bert.pooler.")
    return {"t5": t5, "t5_encoder": enc, "no_pooler": no_pooler, "no_head": tiny_bert,
            "head": head, "head_no_pooler": head_no_pooler}


@pytest.mark.parametrize("name, model_type", [
    ("t5", "sparseenct5_cls"), ("t5_encoder", "sparseenct5_cls"),
    ("no_pooler", "sparsebert_cls"), ("no_head", "sparsebert_cls"),
])
def test_a_new_head_is_initialised_finite_and_said(checkpoints, name, model_type, caplog):
    with caplog.at_level(logging.INFO, logger="minidisc"):
        model = load_model(model_type, checkpoints[name], SST2, "--teacher_model_path",
                           new_head=True)
    _finite(model)
    assert torch.isfinite(torch.tensor(_first_loss(model)))
    said = [r.getMessage() for r in caplog.records if "a new task head" in r.getMessage()]
    assert len(said) == 1 and "classifier.weight" in said[0], said
    if name == "t5_encoder":
        assert "decoder.block.0" in said[0]


@pytest.mark.parametrize("name, model_type, key", [
    ("t5_encoder", "sparseenct5_cls", "classifier.bias"),
    ("no_pooler", "sparsebert_cls", "bert.pooler.dense.bias"),
    ("head_no_pooler", "sparsebert_cls", "bert.pooler.dense.bias"),
])
def test_missing_weights_are_refused_where_no_head_is_trained(checkpoints, name, model_type,
                                                             key):
    with pytest.raises(MiniDiscError, match="weights missing or misshapen") as e:
        load_model(model_type, checkpoints[name], SST2, "--student_model_path")
    assert key in str(e.value) and "\n" not in str(e.value)


def test_body_weights_without_a_place_are_refused(checkpoints, tmp_path):
    """A config that says one layer over a two-layer checkpoint: layer 1 would be dropped."""
    folder = shutil.copytree(checkpoints["head"], tmp_path / "cut")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    with pytest.raises(MiniDiscError, match="has no place for") as e:
        load_model("sparsebert_cls", folder, SST2, "--teacher_model_path", new_head=True)
    assert "encoder.layer.1." in str(e.value)


def test_export_refuses_what_loading_refuses(checkpoints, tmp_path):
    from minidisc.export import load_student

    folder = shutil.copytree(checkpoints["head"], tmp_path / "cut")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    with pytest.raises(MiniDiscError, match="has no place for"):
        load_student(folder)
    with pytest.raises(MiniDiscError, match="bert.pooler.dense"):
        load_student(checkpoints["head_no_pooler"])


def test_a_pretraining_head_is_dropped_silently(tmp_path):
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    BertForPreTraining(tiny_config()).save_pretrained(tmp_path)
    model = load_model("sparsebert_cls", tmp_path, SST2, "--teacher_model_path", new_head=True)
    _finite(model)


def test_a_teacher_missing_any_head_weight_is_refused(checkpoints, tmp_path, capsys):
    """Its classifier is there, its pooler is not: the head was never trained as a whole."""
    data = write_sst2_task(tmp_path / "data")
    out = tmp_path / "out"
    teacher = checkpoints["head_no_pooler"]
    assert main(["--mode", "sparsify", "--task_name", "sst2", "--data_dir", str(data),
                 "--output_dir", str(out), "--teacher_model_path", str(teacher),
                 "--use_cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its task head is not trained" in err[0], err
    assert "bert.pooler.dense" in err[0] and not out.exists()


def test_enct5_finetune_from_an_encoder_only_checkpoint_trains(checkpoints, tmp_path):
    data = write_sst2_task(tmp_path / "data")
    results = run_mode("finetune", data, tmp_path / "out", checkpoints["t5_encoder"],
                       "--model_type", "sparseenct5_cls", "--do_train", "--log_interval", "3",
                       "--max_length", "32")
    assert all(torch.isfinite(torch.tensor(h["score"])) for h in results["train"]["history"])
