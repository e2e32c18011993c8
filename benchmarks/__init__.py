"""Benchmarks for partywidget, runnable standalone (``python -m benchmarks.<name>``).

They measure time on purpose, so they live outside ``tests/`` (tests never assert on
timing). Results are written under ``benchmarks/results/``, which is not committed.
"""
