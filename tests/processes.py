"""Starting real processes for tests: one component process, the `harag` CLI, `harag up`.

`free_port` is re-exported from harag_cli.localports for the tests that import it from here."""

from __future__ import annotations

import asyncio
import json
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


class LogBook:
    """Keeps every process's log lines, so tests can read them and failures can show them."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, name: str, line: str) -> None:
        self.lines.append((name, line))

    def of(self, name: str) -> list[str]:
        return [line for n, line in self.lines if n == name]

    def json_of(self, name: str) -> list[dict]:
        out = []
        for line in self.of(name):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out


HARAG = [sys.executable, "-m", "harag_cli.main"]


# Where `harag up` run by tests keeps its development API keys (never the user's own).
STATE_HOME = tempfile.mkdtemp(prefix="harag-test-state-")


def harag_env() -> dict[str, str]:
    """This environment without HARAG_* and OTEL_* settings, so a test sees the defaults, and
    with a state directory of the tests' own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARAG_", "OTEL_"))}
    return {**env, "XDG_STATE_HOME": STATE_HOME}


async def run_harag(*argv: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """Runs the `harag` CLI to completion: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *HARAG,
        *argv,
        cwd=REPO,
        env=harag_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class HaragUp:
    """`harag up` in a subprocess: `async with HaragUp(offset, data_dir) as up:` returns once it
    printed its whole banner (up.lines holds its output so far); leaving sends Ctrl-C and waits.

    The mesh runs the hashed embedders unless `flags` name another `--embedder`: the neural
    one (what `make run` starts where it loads) takes half a minute to ingest the corpus."""

    def __init__(
        self, port_offset: int, data_dir: Path, *flags: str, env: dict[str, str] | None = None
    ) -> None:
        self.argv = [
            *HARAG,
            "up",
            "--port-offset",
            str(port_offset),
            "--data-dir",
            str(data_dir),
            "--no-trace-viewer",
            *(() if "--embedder" in flags else ("--embedder", "hashed")),
            *flags,
        ]
        self.env = {**harag_env(), **(env or {})}
        self.lines: list[str] = []
        self.rest = ""
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> HaragUp:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=REPO,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._proc.stdout is not None
        try:
            while not self.lines or "Ctrl-C stops everything" not in self.lines[-1]:
                raw = await asyncio.wait_for(self._proc.stdout.readline(), 90)
                assert raw, "harag up ended early:\n" + "\n".join(self.lines[-40:])
                self.lines.append(raw.decode().rstrip())
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def wait_for_line(self, text: str, timeout_s: float = 120) -> str:
        """Reads `harag up`'s output until a line containing `text` (maybe read already)."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not any(text in line for line in self.lines):
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(self._proc.stdout.readline(), max(left, 0.001))
            assert raw, f"harag up ended before printing {text!r}:\n" + "\n".join(self.lines[-40:])
            self.lines.append(raw.decode().rstrip())
        return next(line for line in self.lines if text in line)

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGINT)
        self.rest = (await asyncio.wait_for(self._proc.stdout.read(), 60)).decode()
        self.returncode = await self._proc.wait()
