"""python -m minidisc.predict: TSV, GLUE, JSON Lines and CoNLL inputs; rows align with the input,
probabilities match the project's model; bad input is one error line and no output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import (
    FAST_FLAGS,
    MNLI_HEADER,
    MNLI_LABELS,
    mnli_rows,
    write_conll_task,
    write_mnli_task,
)

from minidisc.data.pipeline import load_tokenizer
from minidisc.data.tasks import CONLL_TAGS, TASKS
from minidisc.main import execute
from minidisc.models import load_model
from minidisc.predict import main


def _finetune(tiny_bert: Path, data: Path, out: Path, task: str) -> Path:
    execute(["--mode", "finetune", "--task_name", task, "--data_dir", str(data),
             "--output_dir", str(out), "--teacher_model_path", str(tiny_bert),
             "--num_train_epochs", "1", *FAST_FLAGS])
    kind = "ner" if task == "conll" else "cls"
    return out / f"sparsebert_{kind}_finetune_{task}"


@pytest.fixture(scope="module")
def mnli_run(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    """A run folder finetuned on tiny MNLI, and its data folder."""
    root = tmp_path_factory.mktemp("predict_mnli")
    data = write_mnli_task(root / "data")
    return _finetune(tiny_bert, data, root / "out", "mnli"), data / "mnli"


@pytest.fixture(scope="module")
def conll_run(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("predict_conll")
    data = write_conll_task(root / "data")
    return _finetune(tiny_bert, data, root / "out", "conll"), data / "conll"


def _probabilities(run: Path, pairs: list[tuple[str, str]]) -> torch.Tensor:
    model = load_model("sparsebert_cls", run / "model", TASKS["mnli"], "MODEL").eval()
    tok = load_tokenizer(run / "model")
    rows = [tok(a, b, return_tensors="pt") for a, b in pairs]  # one by one: no padding at all
    with torch.no_grad():
        return torch.cat([model(**r).logits.softmax(-1) for r in rows])


def _check_classified(fields: list[dict], run: Path, pairs: list[tuple[str, str]]) -> None:
    probs = torch.tensor([[float(f[f"prob_{name}"]) if f"prob_{name}" in f
                           else f["probabilities"][name] for name in MNLI_LABELS]
                          for f in fields])
    assert probs.sum(-1).sub(1).abs().max() < 1e-5
    torch.testing.assert_close(probs, _probabilities(run, pairs), atol=1e-5, rtol=0)
    assert [f["prediction"] for f in fields] == [MNLI_LABELS[i] for i in probs.argmax(-1)]


def test_tsv_with_header_and_text_columns(mnli_run, tmp_path):
    run, _ = mnli_run
    rows = mnli_rows(20, seed=7)
    src = tmp_path / "pairs.tsv"
    src.write_text("id\tpremise\thypothesis\n"
                   + "".join(f"{i}\t{a}\t{b}\n" for i, (a, b, _) in enumerate(rows)))
    assert main([str(run), "--input", str(src), "--text_columns", "premise,hypothesis",
                 "--per_device_eval_batch_size", "3", "--use_cpu"]) == 0
    lines = (tmp_path / "pairs.predictions.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["id", "premise", "hypothesis", "prediction",
                      *(f"prob_{name}" for name in MNLI_LABELS)]
    inputs = src.read_text().splitlines()
    assert len(lines) == len(inputs)
    for got, row in zip(lines[1:], inputs[1:]):
        assert got.startswith(row + "\t")
    _check_classified([dict(zip(header, line.split("\t"))) for line in lines[1:]], run,
                      [(a, b) for a, b, _ in rows])


def test_jsonl_keeps_fields_and_adds_prediction(mnli_run, tmp_path):
    run, _ = mnli_run
    rows = mnli_rows(9, seed=8)
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"text": a, "text_pair": b, "n": i}) + "\n"
                           for i, (a, b, _) in enumerate(rows)))
    out = tmp_path / "out.jsonl"
    assert main([str(run / "model"), "--input", str(src), "--output", str(out), "--task_name",
                 "mnli", "--use_cpu"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["n"] for g in got] == list(range(9))
    assert [(g["text"], g["text_pair"]) for g in got] == [(a, b) for a, b, _ in rows]
    assert list(got[0]["probabilities"]) == MNLI_LABELS
    _check_classified(got, run, [(a, b) for a, b, _ in rows])


def test_glue_dev_and_test_files(mnli_run, tmp_path):
    run, data = mnli_run
    assert main([str(run), "--input", str(data / "dev_matched.tsv"), "--output",
                 str(tmp_path / "dev.tsv"), "--use_cpu"]) == 0
    lines = (tmp_path / "dev.tsv").read_text().splitlines()
    assert lines[0] == MNLI_HEADER + "\tprediction\t" + "\t".join(
        f"prob_{name}" for name in MNLI_LABELS)
    assert len(lines) == len((data / "dev_matched.tsv").read_text().splitlines())
    test = tmp_path / "test_matched.tsv"  # GLUE's test layout: no label columns
    rows = mnli_rows(5, seed=9)
    test.write_text("\t".join(MNLI_HEADER.split("\t")[:10]) + "\n" + "".join(
        f"{i}\t0\t0\tfiction\t-\t-\t-\t-\t{a}\t{b}\n" for i, (a, b, _) in enumerate(rows)))
    assert main([str(run), "--input", str(test), "--use_cpu"]) == 0
    lines = (tmp_path / "test_matched.predictions.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    _check_classified([dict(zip(header, line.split("\t"))) for line in lines[1:]], run,
                      [(a, b) for a, b, _ in rows])


def test_conll_gives_one_tag_per_word(conll_run, tmp_path):
    run, data = conll_run
    words = ["john visited paris".split(), "mary works at acme corp in london".split()]
    plain = tmp_path / "words.txt"  # unlabelled: one word per line
    plain.write_text("\n\n".join("\n".join(s) for s in words) + "\n")
    for src in (plain, data / "test.txt"):
        out = tmp_path / f"{src.stem}.out"
        assert main([str(run), "--input", str(src), "--output", str(out), "--use_cpu"]) == 0
        inputs = src.read_text().split("\n")
        lines = out.read_text().split("\n")
        assert len(lines) == len(inputs)
        for got, line in zip(lines, inputs):
            if line.strip() and not line.startswith("-DOCSTART-"):
                assert got.startswith(line + " ") and got.split()[-1] in CONLL_TAGS
            else:
                assert got == line
    src = tmp_path / "words.jsonl"
    src.write_text("".join(json.dumps({"words": s}) + "\n" for s in words))
    assert main([str(run), "--input", str(src), "--use_cpu"]) == 0
    got = [json.loads(x) for x in (tmp_path / "words.predictions.jsonl").read_text().split("\n")
           if x]
    assert [len(g["tags"]) for g in got] == [len(s) for s in words]


def _fails(capsys, argv: list[str], message: str, folder: Path) -> None:
    before = set(folder.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert set(folder.iterdir()) == before, "an output file was written"


@pytest.mark.parametrize("case, content, extra, message", [
    ("missing model", "text\ttext_pair\na\tb\n", ["--model", "nope"],
     "checkpoint folder not found"),
    ("unknown task", "text\ttext_pair\na\tb\n", ["--task_name", "bogus"],
     "--task_name bogus: unknown task"),
    ("missing column", "premise\thypothesis\na\tb\n", ["--text_columns", "premise,hyp"],
     "no column 'hyp'"),
    ("empty tsv", "", [], "empty file"),
    ("empty jsonl", "\n", [], "no examples"),
    ("malformed json", '{"text": "a", "text_pair": "b"}\n{"text": "a",\n', [],
     ":2: not valid JSON"),
    ("missing input", None, [], "file not found"),
])
def test_bad_input_is_one_error_line(mnli_run, tmp_path, capsys, case, content, extra, message):
    run, _ = mnli_run
    src = tmp_path / ("in.jsonl" if "json" in case else "in.tsv")
    if content is not None:
        src.write_text(content)
    model = extra[1] if extra[:1] == ["--model"] else str(run)
    extra = [] if extra[:1] == ["--model"] else extra
    _fails(capsys, [model, "--input", str(src), "--use_cpu", *extra], message, tmp_path)


def test_model_without_a_task_head_is_refused(tiny_bert, tmp_path, capsys):
    src = tmp_path / "in.tsv"
    src.write_text("text\nthe movie was good\n")
    _fails(capsys, [str(tiny_bert), "--input", str(src), "--task_name", "sst2"],
           "needs a finetuned", tmp_path)
