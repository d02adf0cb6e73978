"""CPU latency of a prunable teacher: full, virtually narrowed, and densified, side by side.

    python -m benchmarks.latency PRUNABLE_CHECKPOINT [--sparsity 50 90] [--batch 32] [--length 64]

Prints milliseconds per batch and the ratios to the full model, measured interleaved in one
run so machine noise hits every variant alike. Virtual narrowing (the sandwich's `sparsify`)
computes with weight slices, so it already saves the FLOPs; `densify` also drops the unused
weights, which is what makes checkpoints and memory small.
"""

from __future__ import annotations

import argparse
import copy

import torch

from minidisc.demo import cpu_latency_ms
from minidisc.models.sparse_bert import SparseBertForSequenceClassification, count_params


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--sparsity", type=float, nargs="+", default=[50, 90])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    torch.manual_seed(0)
    full = SparseBertForSequenceClassification.from_pretrained(a.checkpoint).eval()
    ids = torch.randint(1000, 2000, (a.batch, a.length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    models = {"full": full}
    for s in a.sparsity:
        virtual = copy.deepcopy(full)
        virtual.sparsify(s)
        dense = copy.deepcopy(virtual)
        dense.densify()
        models[f"{s:g}% virtual"] = virtual
        models[f"{s:g}% densified"] = dense
    ms = cpu_latency_ms(models, batch, a.repeats)
    print(f"batch {a.batch} x {a.length} tokens, {torch.get_num_threads()} threads")
    print(f"{'model':>16} {'ms/batch':>9} {'vs full':>8} {'encoder params':>15}")
    for name, m in models.items():
        print(f"{name:>16} {ms[name]:9.1f} {ms['full'] / ms[name]:7.2f}x "
              f"{count_params(m)['encoder']:15,d}")


if __name__ == "__main__":
    main()
