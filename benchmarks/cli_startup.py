"""How fast run.py answers when it does not train: `--help`, `--print_config` and a flag error,
each in a fresh interpreter, against `python -c "import torch, transformers"` (what every
answer cost before the configuration stopped importing the modes). Interleaved rounds (one of
each per round) so machine noise hits all alike; reported as medians and as ratios to the
import, with their spread over rounds.

    flock /work/measure.lock python -m benchmarks.cli_startup [--repeats 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--mode", "finetune", "--task_name", "sst2"]
COMMANDS = {
    "import torch, transformers": ["-c", "import torch, transformers"],
    "run.py --help": ["run.py", "--help"],
    "run.py --print_config": ["run.py", *FLAGS, "--print_config"],
    "run.py flag error": ["run.py", *FLAGS, "--learning_rate", "fast"],
}


def once(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def measure(repeats: int) -> dict:
    for args in COMMANDS.values():
        once(args)  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, args in COMMANDS.items():
            times[name].append(once(args))
    base = "import torch, transformers"
    out = {}
    for name, t in times.items():
        ratios = [a / b for a, b in zip(t, times[base])]
        out[name] = {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                     "ratio_to_import_median": statistics.median(ratios),
                     "ratio_range": [min(ratios), max(ratios)]}
    return {"repeats": repeats, "python": sys.version.split()[0], "results": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    a = ap.parse_args(argv)
    res = measure(a.repeats)
    for name, r in res["results"].items():
        print(f"{name:<28} median {r['median_s']:6.3f} s  (min {r['min_s']:.3f}, max "
              f"{r['max_s']:.3f})  x{r['ratio_to_import_median']:.3f} of the import "
              f"[{r['ratio_range'][0]:.3f}-{r['ratio_range'][1]:.3f}]")
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
