"""Compression: importance, the sparsity map, distillation losses and the lambda schedule."""
