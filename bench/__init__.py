"""Benchmarks: a load generator and the scenarios behind the README's Performance section."""
