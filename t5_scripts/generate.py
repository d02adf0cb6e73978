"""Write t5_scripts/run_<mode>_<task>.sh: the EncT5 (T5 encoder + EncT5 head) pipeline.

Same template as bert_scripts (this file loads bert_scripts/generate.py and changes only what
differs): model types `ftenct5_cls` (finetuning) and `sparseenct5_cls` (the rest), data type
`enct5_cls`, a required starting checkpoint (no T5 ships with MiniDisc) and the reference's T5
hyper-parameters, which exist for mrpc and qqp only.

    python t5_scripts/generate.py            # rewrite the scripts next to this file
    python t5_scripts/generate.py --out DIR  # write them elsewhere (the tests compare)

Standard library only, like bert_scripts/generate.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_bert_generator():
    """A private instance of bert_scripts/generate.py whose tables this file replaces."""
    path = HERE.parent / "bert_scripts" / "generate.py"
    spec = importlib.util.spec_from_file_location("t5_scripts_bert_generate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = _load_bert_generator()

REF = "reference (GeneZC/MiniDisc t5_scripts/run_*_{}.sh)"
# The reference has no T5 finetuning scripts: finetuning takes the task's distillation values
# with bert_scripts' chosen epochs (5 for a small task, 3 for a large one).
FINETUNE_SOURCE = "chosen as in bert_scripts (the reference has no T5 finetuning script)"
gen.TASKS = {
    # source, selection metric, batch size, learning rate, epochs, finetune epochs,
    # patience epochs, log interval
    "mrpc": gen.Hparams(REF.format("mrpc"), "acc_and_f1", 32, "2e-4", 10, 5, 5, 10,
                        finetune_source=FINETUNE_SOURCE),
    "qqp": gen.Hparams(REF.format("qqp"), "acc_and_f1", 32, "1e-4", 10, 3, 5, 3000,
                       finetune_source=FINETUNE_SOURCE),
}
gen.SCRIPT_TASKS = tuple(gen.TASKS)
SPARSIFY_EVAL_BATCH = "16"  # the reference's T5 sparsification scripts (3B teacher)
gen.POSITIONALS = {
    **gen.POSITIONALS,
    "finetuning": (
        ("model", "--teacher_model_path", None, "MODEL",
         "T5 / T5 v1.1 / flan-t5 checkpoint folder to start from"),
        ("suffix", "--model_suffix", "", "SUFFIX", "tag for the run folder name"),
    ),
}
_bert_flags = gen._flags


def _flags(mode: str, task: str, hp) -> list[tuple[str, str | None]]:
    """bert_scripts' command line with the EncT5 model and data types."""
    flags = []
    for flag, value in _bert_flags(mode, task, hp):
        if flag == "--model_type":
            value = "ftenct5_cls" if mode == "finetuning" else "sparseenct5_cls"
        elif flag == "--data_type":
            value = "enct5_cls"
        elif flag == "--per_device_eval_batch_size" and mode == "sparsification":
            value = SPARSIFY_EVAL_BATCH
        flags.append((flag, value))
    return flags


gen._flags = _flags
_bert_render = gen.render


def render(mode: str, task: str) -> str:
    """The text of t5_scripts/run_<mode>_<task>.sh."""
    return (_bert_render(mode, task)
            .replace("bert_scripts/", "t5_scripts/")
            .replace("e.g. --model_type kdbert_cls.", "e.g. --learning_rate 1e-4."))


gen.render = render


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE,
                   help="folder to write the scripts into (default: t5_scripts/)")
    written = gen.generate(p.parse_args().out)
    print(f"wrote {len(written)} scripts")


if __name__ == "__main__":
    main()
