"""Export a finetuned or distilled student to ONNX, to serve it without PyTorch.

    python -m minidisc.export STUDENT --onnx OUT.onnx [--max_length 128] [--opset 17] [--no_verify]

STUDENT is a checkpoint folder or a run folder (its final checkpoint). The graph takes int64
input_ids, attention_mask and (families whose tokenizer has them: BERT) token_type_ids with
dynamic batch and sequence axes and returns logits. A densified student exports at its physical
per-layer widths, ragged or zero included. The file is verified against PyTorch with onnxruntime
before it is renamed into place.

We use the TorchScript exporter (`dynamo=False`), not torch 2.13's default dynamo one: both
give the same logits here, but dynamo needs the extra `onnxscript` package, writes the weights
to a sidecar `.onnx.data` file by default, and takes seconds where tracing takes under one.
Tracing fits this model: the per-layer widths are Python ints that it bakes into the graph,
while batch and sequence sizes stay symbolic. Its deprecation warning is silenced here; revisit
when torch is unpinned.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig

from minidisc.commands import ArgumentParser, configure_logging
from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import atomic_write
from minidisc.models import check_checkpoint
from minidisc.models.families import accepted, family_of_config, head_kind
from minidisc.training.outputs import resolve_checkpoint

logger = logging.getLogger("minidisc.export")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # those a family may take
TOLERANCE = 1e-4  # max |logit difference| onnxruntime vs PyTorch accepted by the check
# 14 brought scaled_dot_product_attention; 20 is the TorchScript exporter's newest in torch 2.13
OPSETS = range(14, 21)
# Plain BertFor.../RobertaFor... checkpoints load into the Sparse classes: the names match.


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
    bad = sorted(info["missing_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
    if bad:
        raise MiniDiscError(f"student {p}: weights missing or misshapen in the checkpoint: "
                            f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}")
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


def export(student: str | Path, out: str | Path, max_length: int = 128, opset: int = 17,
           verify: bool = True) -> float | None:
    """Export `student` to `out` (written whole or not at all); the verified max |diff|."""
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
    model = load_student(student)
    # T5's relative positions have no table to outgrow
    length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    heads, neurons = model.base_model.physical_widths()
    logger.info("exporting %s: heads per layer %s, FFN neurons per layer %s",
                type(model).__name__, heads, neurons)
    with atomic_write(out) as tmp:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.touch()
        except OSError as e:
            raise MiniDiscError(f"--onnx {out}: cannot write ({e.strerror})") from None
        export_onnx(model, tmp, length, opset)
        onnx.checker.check_model(str(tmp))
        diff = max_abs_diff(model, tmp, length) if verify else None
        if diff is not None:
            if not diff <= TOLERANCE:
                raise MiniDiscError(f"onnxruntime logits differ from PyTorch by {diff:.2e} "
                                    f"(> {TOLERANCE:g}); {out} not written")
            logger.info("onnxruntime matches PyTorch: max |logit diff| %.2e", diff)
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
    configure_logging()

    def run() -> None:
        args = ap.parse_args(argv)
        export(args.student, args.onnx, args.max_length, args.opset, not args.no_verify)

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
