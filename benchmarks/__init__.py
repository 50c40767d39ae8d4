"""Benchmarks for memory-runtime: `python -m benchmarks.run_all [--quick]` writes RESULTS.md and plots.

Sections (issue 4): A the 50-turn session suite, B evidence recall at budget on LoCoMo against
baselines, C proxy overhead, D scale. Every number comes through the public `memory` API (and the
proxy's HTTP face); speed targets are reported here, never asserted in timed tests.
"""
