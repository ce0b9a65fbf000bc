"""Benchmarks: each runs the real thing on this machine beside a ceiling measured in the same run.

Run one with `python -m bench.<name>` (see bench/README.md) or all with `python -m bench`.
"""
