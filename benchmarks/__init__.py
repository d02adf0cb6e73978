"""Benchmarks: measured side by side in one run, never asserted as absolute times."""
