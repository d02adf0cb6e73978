"""Entry point: `python run.py --mode {finetune,sparsify,distill,maxidisc,minidisc} ...`."""

from __future__ import annotations

import sys

from minidisc.main import main

if __name__ == "__main__":
    sys.exit(main())
