"""Where a run's time goes: a py-spy profile summed into the training loop's phases.

    py-spy record --format raw --rate 50 --duration 150 -o /tmp/prof.txt -- \\
        bash bert_scripts/run_minidisc_mrpc.sh TEACHER 90 0.2 --num_train_epochs 1 --use_cpu
    python -m benchmarks.profile_summary /tmp/prof.txt

py-spy (`pip install py-spy`) samples the process's Python stacks; each sample is put in the
first phase whose marker occurs in its stack (markers name functions of this code base and of
torch, both the current layout and the one before the performance work, so two profiles
compare). "of which" rows split a phase further (dropout inside the forward passes).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# phase -> markers (a marker is "function (path fragment"); the first matching phase wins
PHASES: dict[str, tuple[str, ...]] = {
    "evaluation (dev scoring)": ("predict (minidisc/training/evaluate.py",),
    "checkpoint writing": ("save_checkpoint (", "save_pretrained (", "save_state ("),
    "optimizer (AdamW)": ("(torch/optim/",),
    "gradient clipping": ("clip_grad_norm_ (",),
    "teacher forward": ("split (minidisc/modes/distill.py", "teacher_forward ("),
    "backward": ("backward (torch/_tensor.py", "_engine_run_backward (",
                 "backward (torch/autograd"),
    "student forward + loss": ("loss (minidisc/modes/distill.py", "sandwich_loss (",
                               "compute_loss ("),
    "data loading": ("(torch/utils/data/",),
}
DETAILS: dict[str, tuple[str, ...]] = {
    "nn.Dropout (all forwards)": ("dropout (torch/nn/functional.py",),
}


def parse(path: Path) -> Counter:
    """py-spy's raw format: one `frame;frame;...;frame COUNT` line per distinct stack."""
    stacks: Counter = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^(.*) (\d+)$", line)
        if m:
            stacks[m.group(1)] += int(m.group(2))
    return stacks


def classify(stack: str, table: dict[str, tuple[str, ...]]) -> str | None:
    for name, markers in table.items():
        if any(m in stack for m in markers):
            return name
    return None


def summarise(stacks: Counter) -> tuple[dict[str, float], dict[str, float], int]:
    total = sum(stacks.values())
    phases: Counter = Counter()
    details: Counter = Counter()
    for stack, n in stacks.items():
        phases[classify(stack, PHASES) or "other"] += n
        detail = classify(stack, DETAILS)
        if detail is not None:
            details[detail] += n
    share = {k: v / total for k, v in phases.most_common()} if total else {}
    return share, {k: v / total for k, v in details.items()} if total else {}, total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profiles", nargs="+", type=Path, help="py-spy --format raw outputs")
    a = p.parse_args(argv)
    results = {f.name: summarise(parse(f)) for f in a.profiles}
    names = list(PHASES) + ["other"] + list(DETAILS)
    print("| phase | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in names:
        cells = []
        for share, details, _total in results.values():
            value = share.get(name, details.get(name))
            cells.append("–" if value is None else f"{100 * value:.1f}%")
        label = f"of which {name}" if name in DETAILS else name
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| samples | " + " | ".join(str(t) for _s, _d, t in results.values()) + " |")


if __name__ == "__main__":
    main()
