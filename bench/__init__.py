"""Benchmarks: a load generator and the scenarios behind docs/performance.md."""
