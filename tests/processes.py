"""Starting real service processes for tests: free loopback ports and one component process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harag_cli.localports import free_port
from servicekit.healthcheck import check

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def service_process(
    module: str, impl: str, *, stop_signal: int = signal.SIGTERM, **settings: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Runs `python -m module --impl impl` on a free port (settings as HARAG_* env) until
    it reports SERVING; stops it with `stop_signal` on exit and shows its log on failure."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARAG_")}
    env |= {"HARAG_PORT": str(port), **{f"HARAG_{k.upper()}": v for k, v in settings.items()}}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--impl", impl], cwd=REPO, env=env, stderr=log
        )
        address = f"127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while check(address, timeout_s=0.5) != "SERVING":
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"{module} did not become SERVING:\n{log.read().decode()}")
                time.sleep(0.05)
            yield proc, address
        finally:
            if proc.poll() is None:
                proc.send_signal(stop_signal)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
