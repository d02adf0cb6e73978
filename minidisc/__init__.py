"""MiniDisc: minimal distillation schedule for compressing BERT-style models."""

import warnings

# A layer pruned to zero heads or neurons has empty weights; torch warns when it builds them.
warnings.filterwarnings("ignore", message="Initializing zero-element tensors")

__version__ = "0.1.0"
