"""Starts the seven mesh processes, prefixes their logs, restarts any that die, stops them cleanly.

This is what `harag up` runs and what the integration tests use, so the tests exercise the
same code path as `make run`. A component that exits unexpectedly is restarted with
exponential backoff, as a container orchestrator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from servicekit.healthcheck import check_async as probe
from servicekit.ports import COMPONENT_PORTS, GATEWAY_PORT

log = logging.getLogger("harag.supervisor")

RESTART_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class StartupError(RuntimeError):
    """A process failed to start or to reach SERVING."""


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def mesh_specs(
    ports: dict[str, int] | None = None,
    port_offset: int = 0,
    data_dir: Path = Path("var/data"),
    fault_injection: bool = False,
    env: dict[str, str] | None = None,
) -> list[ProcessSpec]:
    """The seven processes; `ports` maps a process name to a port (defaults otherwise)."""
    ports = dict(ports or {})
    specs: list[ProcessSpec] = []
    chains: dict[str, list[str]] = {}
    for component, by_impl in COMPONENT_PORTS.items():
        for impl, default_port in by_impl.items():
            name = f"{component}-{impl}"
            port = ports.get(name, default_port + port_offset)
            proc_env = {
                **(env or {}),
                "HARAG_IMPL": impl,
                "HARAG_PORT": str(port),
                "HARAG_FAULT_INJECTION": "true" if fault_injection else "false",
                "OTEL_SERVICE_NAME": name,
            }
            if component == "retriever":
                proc_env["HARAG_DATA_DIR"] = str(data_dir / name)
            argv = [sys.executable, "-m", f"{component}_svc", "--impl", impl]
            specs.append(ProcessSpec(name, argv, port, proc_env))
            chains.setdefault(component, []).append(f"{name}=127.0.0.1:{port}")
    gateway_port = ports.get("gateway", GATEWAY_PORT + port_offset)
    gateway_env = {
        **(env or {}),
        "HARAG_PORT": str(gateway_port),
        "OTEL_SERVICE_NAME": "gateway",
        **{f"HARAG_{c.upper()}_CHAIN": ",".join(v) for c, v in chains.items()},
    }
    specs.append(
        ProcessSpec("gateway", [sys.executable, "-m", "gateway"], gateway_port, gateway_env)
    )
    return specs


LineSink = Callable[[str, str], None]


def print_sink(name: str, line: str) -> None:
    print(f"{name:<18}| {line}", flush=True)


class Supervisor:
    def __init__(
        self, specs: list[ProcessSpec], sink: LineSink = print_sink, restart: bool = True
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.sink = sink
        self.restart = restart
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.last_exit: dict[str, int | None] = dict.fromkeys(self.specs)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for spec in self.specs.values():
            await self._spawn(spec)
        self._tasks = [asyncio.create_task(self._babysit(name)) for name in self.specs]

    async def _spawn(self, spec: ProcessSpec) -> None:
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.procs[spec.name] = proc
        self._tasks.append(asyncio.create_task(self._pump(spec.name, proc)))

    async def _pump(self, name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.sink(name, raw.decode(errors="replace").rstrip())

    async def _babysit(self, name: str) -> None:
        """Restarts the process whenever it exits while the mesh is supposed to run."""
        while True:
            proc = self.procs[name]
            code = await proc.wait()
            self.last_exit[name] = code
            if self._stopping or not self.restart:
                return
            delay = RESTART_BACKOFF_S[min(self.restarts[name], len(RESTART_BACKOFF_S) - 1)]
            self.restarts[name] += 1
            self.sink(
                "supervisor",
                f"{name} exited with {code}; restart #{self.restarts[name]} in {delay:g}s",
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn(self.specs[name])

    async def wait_serving(
        self, timeout_s: float = 60.0, names: list[str] | None = None, fail_on_exit: bool = False
    ) -> None:
        """Waits until every process reports SERVING; names the first that cannot.

        With `fail_on_exit` (start-up), a process that exits before SERVING fails at once
        instead of being restarted until the timeout.
        """
        deadline = time.monotonic() + timeout_s
        restarts_before = dict(self.restarts)
        for name in names or list(self.specs):
            while True:
                proc = self.procs[name]
                died = proc.returncode is not None or self.restarts[name] > restarts_before[name]
                if died and (fail_on_exit or not self.restart):
                    code = proc.returncode if proc.returncode is not None else self.last_exit[name]
                    raise StartupError(f"{name} exited with code {code} during start-up")
                if await probe(self.specs[name].address) == "SERVING":
                    break
                if time.monotonic() > deadline:
                    raise StartupError(f"{name} did not report SERVING within {timeout_s:g}s")
                await asyncio.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.procs[name].send_signal(sig)

    async def stop(self, timeout_s: float = 15.0) -> dict[str, int | None]:
        """SIGTERM everyone (gateway first, so it stops taking traffic), then SIGKILL stragglers."""
        self._stopping = True
        order = ["gateway", *(n for n in self.specs if n != "gateway")]
        for name in order:
            proc = self.procs.get(name)
            if proc and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name in order:
            proc = self.procs.get(name)
            if proc is None:
                continue
            try:
                codes[name] = await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                proc.kill()
                codes[name] = await proc.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return codes
