"""Reproducible benchmarks for envelope: `python -m bench` (see docs/benchmarks.md).

Every comparison is measured in one process run, interleaved (A, B, A, B, ...),
and reported as a ratio with its spread, because the machines this runs on
are shared and noisy: trust the ratios, not the absolute MB/s.

Not part of the test run (tests/test_bench_smoke.py only checks that the
harness still runs on tiny sizes).
"""
