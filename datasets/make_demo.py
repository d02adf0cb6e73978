"""Regenerate the committed demo task: `python datasets/make_demo.py [--out DIR] [--seed N]`.

The generator is `minidisc.data.demo_task` (in the package, so an installed `minidisc-demo`
generates the same files on the fly); this script runs it from a checkout.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))
    from minidisc.data.demo_task import main

    main(["--out", str(here / "demo"), *sys.argv[1:]])  # a later --out wins
