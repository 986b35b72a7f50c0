"""Benchmarks: timings printed as ratios against a baseline run in the same process (never asserted in tests)."""
