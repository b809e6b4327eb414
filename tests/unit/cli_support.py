"""Running the `harag` CLI in-process (with the `gateway` fixture of conftest.py)."""

from __future__ import annotations

import pytest

from harag_cli import main as cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Runs `harag ARGV...`; its exit status, stdout and stderr."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
