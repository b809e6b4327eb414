"""Prints the chaos suite's one-line summary at the end of the pytest run."""

from __future__ import annotations

SUMMARIES: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in SUMMARIES:
        terminalreporter.write_line(line)
