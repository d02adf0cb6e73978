"""Scale flags on one process: gradient checkpointing changes no number, a bf16 teacher
distils like an fp32 one, and the combinations that cannot work are refused up front."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import FAST_FLAGS, make_distiller, prunable_pair, tiny_config, write_sst2_task
from transformers import BertForSequenceClassification

from minidisc.main import execute, main
from minidisc.models.sparse_bert import SparseBertForSequenceClassification


def _batch(rows: int = 4, length: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 60, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # padding must be handled the same way in the recomputation
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor([0, 1, 1, 0])[:rows]}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    # dropout on: the recomputed forward must draw the same masks
    plain = SparseBertForSequenceClassification(tiny_config(
        num_labels=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)).train()
    ckpt = copy.deepcopy(plain)
    ckpt.gradient_checkpointing_enable()
    assert ckpt.bert.gradient_checkpointing and not plain.bert.gradient_checkpointing
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(7)
        loss = model(**_batch()).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=0)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grad, grads_b[name], rtol=1e-5, atol=1e-7, msg=name)
    ckpt.eval()  # evaluation never recomputes: same outputs as without
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt(**_batch()).logits, plain(**_batch()).logits)


def test_bf16_teacher_loss_close_to_fp32():
    from minidisc.data.tasks import TASKS

    teacher, student = prunable_pair()
    losses = {}
    for dtype in ("fp32", "bf16"):
        distiller = make_distiller(TASKS["sst2"], copy.deepcopy(teacher), teacher_dtype=dtype)
        assert next(distiller.teacher.parameters()).dtype == (
            torch.bfloat16 if dtype == "bf16" else torch.float32)
        b, inputs, t_out = distiller.split(_batch())
        assert t_out.logits.dtype == next(distiller.teacher.parameters()).dtype
        loss = distiller.loss(student, inputs, t_out, b)
        assert loss.dtype == torch.float32
        losses[dtype] = loss.item()
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)


@pytest.fixture(scope="module")
def teacher_with_head(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("head") / "teacher"
    torch.manual_seed(0)
    BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert / name).is_file():
            (folder / name).write_bytes((tiny_bert / name).read_bytes())
    return folder


def test_distill_with_bf16_teacher_and_checkpointing_runs_close_to_fp32(teacher_with_head,
                                                                         tmp_path):
    data = write_sst2_task(tmp_path / "data")
    common = ["--mode", "distill", "--task_name", "sst2", "--data_dir", str(data),
              "--teacher_model_path", str(teacher_with_head), "--layer_or_sparsity", "1L",
              "--num_train_epochs", "2", "--log_interval", "6", *FAST_FLAGS]
    fp32 = execute([*common, "--output_dir", str(tmp_path / "fp32")])
    bf16 = execute([*common, "--output_dir", str(tmp_path / "bf16"), "--teacher_dtype", "bf16",
                    "--gradient_checkpointing"])
    run = tmp_path / "bf16" / "sparsebert_cls_distill_1L_sst2"
    saved = json.loads((run / "results.json").read_text())
    assert saved["args"]["teacher_dtype"] == "bf16" and saved["args"]["gradient_checkpointing"]
    # the student is saved in fp32 whatever the teacher's precision
    student = SparseBertForSequenceClassification.from_pretrained(run / "model")
    assert next(student.parameters()).dtype == torch.float32
    assert bf16["final"]["dev"]["acc"] == pytest.approx(fp32["final"]["dev"]["acc"], abs=0.07)


@pytest.mark.parametrize("flags, message", [
    (["--mode", "distill", "--layer_or_sparsity", "1L", "--teacher_dtype", "fp16",
      "--use_cpu"], "--teacher_dtype fp16 needs CUDA"),
    (["--mode", "finetune", "--teacher_dtype", "bf16"], "--teacher_dtype is for the modes"),
    (["--mode", "distill", "--distributed_strategy", "zero"], "invalid choice"),
])
def test_scale_flags_refused_up_front(teacher_with_head, tmp_path, capsys, flags, message):
    data = write_sst2_task(tmp_path / "data")
    argv = ["--task_name", "sst2", "--data_dir", str(data), "--output_dir",
            str(tmp_path / "out"), "--teacher_model_path", str(teacher_with_head), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()
