"""Export a finetuned or distilled student to ONNX, to serve it without PyTorch.

    python -m minidisc.export STUDENT --onnx OUT.onnx [--max_length 128] [--opset 17] [--no_verify]
        [--quantize int8 [--per_channel] [--max_metric_drop 1] [--data_dir D] [--task_name T]]

STUDENT is a checkpoint folder or a run folder (its final checkpoint). The graph takes int64
input_ids, attention_mask and (families whose tokenizer has them: BERT) token_type_ids with
dynamic batch and sequence axes and returns logits. A densified student exports at its physical
per-layer widths, ragged or zero included. The file is verified against PyTorch with onnxruntime
before it is renamed into place.

`--quantize int8` writes onnxruntime's dynamic quantization of that graph instead (int8 weights,
per tensor or `--per_channel`; activations quantized on the fly, so no calibration data). The
fp32 and int8 graphs are then both scored through onnxruntime on the task's dev set (the task
the checkpoint was trained on, read from --data_dir); the metrics are printed and recorded
beside the file in OUT with the suffix `.int8.json`. If int8 loses more than --max_metric_drop
points of the task's metric, nothing is written and the export exits 2.

We use the TorchScript exporter (`dynamo=False`), deprecated in torch 2.13: its dynamo
replacement exports BERT and RoBERTa students with the same logits, but fails on EncT5 (the
translation turns the attention's reshape of a transposed tensor into an invalid view) and
takes several times longer (docs/deploying.md, "The dynamo exporter"). Tracing fits this model:
the per-layer widths are Python ints that it bakes into the graph, while batch and sequence
sizes stay symbolic. Its deprecation warning is silenced here.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig

from minidisc.commands import ArgumentParser, configure_logging
from minidisc.data import pipeline
from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import atomic_write, write_json
from minidisc.models import check_checkpoint, check_loaded, read_config, resolve_max_length
from minidisc.models.families import accepted, family_of_config, head_kind
from minidisc.predict import task_for
from minidisc.registry import DEFAULT_DATA_DIR, resolve_checkpoint
from minidisc.training.evaluate import evaluate
from minidisc.training.outputs import provenance
from minidisc.training.runtime import setup

logger = logging.getLogger("minidisc.export")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # those a family may take
TOLERANCE = 1e-4  # max |logit difference| onnxruntime vs PyTorch accepted by the check
# 14 brought scaled_dot_product_attention; 20 is the TorchScript exporter's newest in torch 2.13
OPSETS = range(14, 21)
# Plain BertFor.../RobertaFor... checkpoints load into the Sparse classes: the names match.
QUANTIZE = ("int8",)  # --quantize choices
MAX_METRIC_DROP = 1.0  # points of the task metric int8 may lose by default


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MiniDiscError(f"{module} is not installed: pip install onnx onnxruntime") from None


def load_student(path: str | Path) -> nn.Module:
    """The checkpoint as its task model in float32 (eval mode), refusing missing weights: an
    exported graph with a randomly initialised head would look fine and predict noise."""
    p = check_checkpoint(resolve_checkpoint(path), "student")
    try:
        config = AutoConfig.from_pretrained(p)
    except (OSError, ValueError) as e:
        raise MiniDiscError(f"student {p}: unreadable config.json ({e})") from None
    family = family_of_config(config.model_type)
    if family is None:
        raise MiniDiscError(f"student {p}: a {config.model_type!r} model, expected a "
                            f"{accepted()}")
    archs = config.architectures or []
    kind = head_kind(archs)
    if kind is None:
        raise MiniDiscError(f"student {p}: a {archs[0] if archs else 'headless'} checkpoint has "
                            "no classification head; export a finetuned or distilled model")
    try:
        model, info = family.task_classes[kind].from_pretrained(
            p, config=config, dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MiniDiscError(f"student {p}: cannot load weights: {first}") from None
    check_loaded(model, info, f"student {p}", new_head=False)
    return model.eval()


def input_names(config: Any) -> tuple[str, ...]:
    """The inputs a model of this config takes: token_type_ids only where its family has them
    (a RoBERTa graph declaring them would make every caller feed zeros)."""
    family = family_of_config(config.model_type)
    return INPUTS if family is None or family.token_type_ids else INPUTS[:2]


class _Logits(nn.Module):
    """The task model with positional inputs and a bare logits output, as ONNX wants them."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


def random_batch(config: Any, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tokens with the first row padded at the end and (where the model takes token
    types) a second segment, so the check covers masking and token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, max(1, length - length // 4):] = 0
    types = torch.zeros_like(ids)
    if getattr(config, "type_vocab_size", 1) > 1:
        types[:, length // 2:] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {n: batch[n] for n in input_names(config)}


def export_onnx(model: nn.Module, path: Path, max_length: int = 128, opset: int = 17) -> None:
    """Trace `model` on a batch of `max_length` tokens and write the ONNX graph to `path`.

    The exporter puts the traced module back into its former mode afterwards: the wrapper is
    made eval first, or a fresh (training-mode) wrapper would leave dropout on in `model`."""
    names = input_names(model.config)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"} if model.pooled else axes["input_ids"]
    example = random_batch(model.config, 2, max_length)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(_Logits(model, names).eval(), tuple(example[n] for n in names),
                          str(path), dynamo=False, opset_version=opset, input_names=list(names),
                          output_names=["logits"], dynamic_axes=axes)


def ort_session(path: Path, threads: int | None = None, spin: bool = True) -> Any:
    """A CPU onnxruntime session with every graph optimisation (`threads`: intra-op threads;
    `spin=False` stops idle threads busy-waiting, which would slow other work sharing the CPU)."""
    ort = _require("onnxruntime")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def numpy_inputs(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {n: t.numpy() for n, t in batch.items()}


@torch.inference_mode()
def max_abs_diff(model: nn.Module, path: Path, max_length: int) -> float:
    """Largest |logit| gap onnxruntime vs PyTorch over two batch and sequence sizes (the
    second differs from the traced one, so it also checks the dynamic axes)."""
    session = ort_session(path)
    worst = 0.0
    for i, (b, t) in enumerate([(2, max_length), (3, max(2, max_length // 2 + 1))]):
        batch = random_batch(model.config, b, t, seed=i + 1)
        ref = model(**batch).logits.numpy()
        got = session.run(["logits"], numpy_inputs(batch))[0]
        if got.shape != ref.shape:
            raise MiniDiscError(f"onnxruntime logits have shape {got.shape}, "
                                f"PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def quantize_int8(src: Path, dst: Path, per_channel: bool = False) -> None:
    """onnxruntime's dynamic quantization: MatMul/Gemm weights stored as int8 (signed, the
    format onnxruntime's CPU kernels are fastest with), activations quantized per batch."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # it logs a line per tensor (and a pre-processing hint) on the root logger
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(src, dst, per_channel=per_channel, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


class _OrtModel:
    """An onnxruntime session behind the little of a task model's interface that the
    evaluation loop calls (eval/train, and forward returning `.logits`), so the graph is
    scored by the same prediction and metric code as a PyTorch model."""

    training = False

    def __init__(self, path: Path):
        self.session = ort_session(path)
        self.names = [i.name for i in self.session.get_inputs()]

    def eval(self) -> _OrtModel:
        return self

    def train(self, mode: bool = True) -> _OrtModel:
        return self

    def __call__(self, **inputs: torch.Tensor) -> Any:
        feed = {n: inputs[n].cpu().numpy().astype(np.int64) for n in self.names}
        logits = self.session.run(["logits"], feed)[0]
        return SimpleNamespace(logits=torch.from_numpy(logits))


@dataclass
class DevSet:
    """The task's first dev split, tokenised and batched once for both graphs."""

    task: Any
    split: pipeline.Split
    batches: pipeline.EvalBatches

    def score(self, path: Path) -> dict[str, float]:
        return evaluate(_OrtModel(path), self.split, self.batches, self.task, setup(True, False))


def dev_set(ckpt: Path, data_dir: str | Path, task_name: str | None, max_length: int,
            batch_size: int = 32) -> DevSet:
    """Read and tokenise the dev split before anything is exported, so missing data fails
    first."""
    task = task_for(task_name, read_config(ckpt, "student"))
    examples = task.read(data_dir, task.dev_splits[0])
    tok = pipeline.load_tokenizer(ckpt, pre_split=task.is_ner)
    split = pipeline.encode_split(task, task.dev_splits[0], examples, tok,
                                  resolve_max_length(tok, max_length))
    if not split.has_labels:
        raise MiniDiscError(f"--data_dir {data_dir}: {task.name}'s {split.name} split has no "
                            "labels to score int8 on")
    return DevSet(task, split, pipeline.eval_loader(split, task, tok, batch_size))


def compare(dev: DevSet, fp32: Path, int8: Path, max_drop: float) -> dict[str, Any]:
    """Both graphs' dev metrics; a one-line error when int8 loses more than `max_drop`
    points of the task's selection metric."""
    name = dev.task.selection_metric
    scores = {"fp32": dev.score(fp32), "int8": dev.score(int8)}
    a, b = 100 * scores["fp32"][name], 100 * scores["int8"][name]
    drop = a - b
    print(f"{dev.task.name} {dev.split.name} {name} ({len(dev.split.examples)} examples): "
          f"fp32 {a:.2f}, int8 {b:.2f} (drop {drop:+.2f} points, allowed {max_drop:g})")
    if drop > max_drop:
        raise MiniDiscError(f"--max_metric_drop {max_drop:g}: int8 {dev.split.name} {name} "
                            f"{b:.2f} is {drop:.2f} points below fp32 {a:.2f}; nothing written "
                            "(a larger --max_metric_drop accepts it)")
    return {"task": dev.task.name, "split": dev.split.name,
            "examples": len(dev.split.examples), "metric": name, "drop_points": drop,
            "max_metric_drop": max_drop, **scores}


def sidecar(out: Path) -> Path:
    """Where an int8 export records its metrics: OUT.onnx -> OUT.int8.json."""
    return out.with_suffix(".int8.json")


def export(student: str | Path, out: str | Path, max_length: int = 128, opset: int = 17,
           verify: bool = True, quantize: str | None = None, per_channel: bool = False,
           max_metric_drop: float = MAX_METRIC_DROP, data_dir: str | Path = DEFAULT_DATA_DIR,
           task_name: str | None = None) -> float | None:
    """Export `student` to `out` (written whole or not at all); the verified max |diff|.
    With `quantize="int8"`, `out` is the int8 graph, checked on the dev set (see the module)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if quantize not in (None, *QUANTIZE):
        raise MiniDiscError(f"--quantize {quantize}: choose {', '.join(QUANTIZE)}")
    if not max_metric_drop >= 0:
        raise MiniDiscError(f"--max_metric_drop {max_metric_drop:g}: must be at least 0")
    if opset not in OPSETS:
        raise MiniDiscError(f"--opset {opset}: the exporter supports {OPSETS[0]} to {OPSETS[-1]}")
    if max_length < 2:
        raise MiniDiscError(f"--max_length {max_length}: need at least 2 tokens")
    out = Path(out)
    if out.is_dir():
        raise MiniDiscError(f"--onnx {out}: is a folder; give the .onnx file to write")
    onnx = _require("onnx")
    if verify:
        _require("onnxruntime")
    ckpt = resolve_checkpoint(student)
    model = load_student(ckpt)
    # T5's relative positions have no table to outgrow
    length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    dev = dev_set(ckpt, data_dir, task_name, length) if quantize else None
    heads, neurons = model.base_model.physical_widths()
    logger.info("exporting %s: heads per layer %s, FFN neurons per layer %s",
                type(model).__name__, heads, neurons)
    record = None
    with atomic_write(out) as tmp:
        # the fp32 graph is the file itself, or (with --quantize) the input to quantization
        fp32 = tmp.with_name(f"{tmp.name}.fp32") if dev is not None else tmp
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fp32.touch()
        except OSError as e:
            raise MiniDiscError(f"--onnx {out}: cannot write ({e.strerror})") from None
        try:
            export_onnx(model, fp32, length, opset)
            onnx.checker.check_model(str(fp32))
            diff = max_abs_diff(model, fp32, length) if verify else None
            if diff is not None:
                if not diff <= TOLERANCE:
                    raise MiniDiscError(f"onnxruntime logits differ from PyTorch by {diff:.2e} "
                                        f"(> {TOLERANCE:g}); {out} not written")
                logger.info("onnxruntime matches PyTorch: max |logit diff| %.2e", diff)
            if dev is not None:
                quantize_int8(fp32, tmp, per_channel)
                record = {
                    "student": str(ckpt), "onnx": out.name, "quantization": {
                        "method": "onnxruntime.quantization.quantize_dynamic",
                        "weight_type": "QInt8", "per_channel": per_channel},
                    **compare(dev, fp32, tmp, max_metric_drop),
                    "fp32_mb": fp32.stat().st_size / 2**20, "int8_mb": tmp.stat().st_size / 2**20,
                    "fp32_max_abs_logit_diff_vs_torch": diff,
                    "provenance": provenance(started, {"student": str(ckpt)})}
        finally:
            if fp32 != tmp:
                fp32.unlink(missing_ok=True)
    if record is not None:
        write_json(sidecar(out), record)
    else:
        sidecar(out).unlink(missing_ok=True)  # it described an int8 graph no longer there
    logger.info("wrote %s (%.1f MB)", out, out.stat().st_size / 2**20)
    return diff


def main(argv: Sequence[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m minidisc.export", description=__doc__.splitlines()[0])
    ap.add_argument("student", help="checkpoint folder or run folder (its final checkpoint)")
    ap.add_argument("--onnx", required=True, type=Path, help="the .onnx file to write")
    ap.add_argument("--max_length", type=int, default=128,
                    help="tokens per sequence of the traced and checked batches "
                         "(capped at the model's positions; the graph takes other lengths too)")
    ap.add_argument("--opset", type=int, default=17,
                    help="ONNX opset, 14 to 20 (17: native LayerNorm)")
    ap.add_argument("--no_verify", action="store_true",
                    help="skip the onnxruntime vs PyTorch logits check")
    ap.add_argument("--quantize", choices=QUANTIZE,
                    help="write onnxruntime's dynamic int8 quantization of the graph, checked "
                    "on the task's dev set")
    ap.add_argument("--per_channel", action="store_true",
                    help="with --quantize: one int8 scale per output channel, not per tensor")
    ap.add_argument("--max_metric_drop", type=float, default=MAX_METRIC_DROP,
                    help="with --quantize: points of the task metric int8 may lose against "
                    "fp32 (default: %(default)g); a larger drop writes nothing and exits 2")
    ap.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                    help="with --quantize: folder holding the task's folder (default: "
                    "%(default)s)")
    ap.add_argument("--task_name",
                    help="with --quantize: the task to score on (default: the checkpoint's)")
    configure_logging()

    def run() -> None:
        args = ap.parse_args(argv)
        export(args.student, args.onnx, args.max_length, args.opset, not args.no_verify,
               args.quantize, args.per_channel, args.max_metric_drop, args.data_dir,
               args.task_name)

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
