"""Starts the seven mesh processes, prefixes their logs, restarts any that die, stops them cleanly.

This is what `harag up` runs and what the integration tests use, so the tests exercise the
same code path as `make run`. A component that exits unexpectedly is restarted with
exponential backoff, as a container orchestrator would; one that never reaches SERVING is
given up on after a few tries (`RestartPolicy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harag_cli.certs import OPERATOR_IDENTITY, tls_env
from harag_cli.localports import listens_on, taken_ports
from servicekit.healthcheck import check_async as probe
from servicekit.ports import COMPONENT_PORTS, GATEWAY_PORT
from servicekit.tls import GATEWAY_IDENTITY

log = logging.getLogger("harag.supervisor")

TAIL_LINES = 5  # how much of a failed process's output a start-up error shows


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor restarts a process that exited.

    The back-off grows with each consecutive restart and starts again from the first step once
    a run reached SERVING and stayed up `stable_after_s`. A process that exits `give_up_after`
    times in a row without ever reaching SERVING is not restarted again: it fails the same way
    each time (a bad setting, a port in use), and restarting it only fills the log.
    """

    backoff_s: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0)
    stable_after_s: float = 30.0
    give_up_after: int = 4
    start_poll_s: float = 0.1  # how often a starting process is probed for SERVING


class StartupError(RuntimeError):
    """A process failed to start or to reach SERVING."""


HEALTH_PORT_OFFSET = 2000
"""With mTLS, each process's plaintext health port is its gRPC port + this (mesh_specs)."""


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    # A plaintext grpc.health.v1 port: the supervisor probes there when the gRPC port
    # speaks (m)TLS.
    health_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def probe_address(self) -> str:
        return f"127.0.0.1:{self.health_port or self.port}"

    def ports(self) -> dict[str, int]:
        """Every port the process listens on, by what for."""
        ports = {self.name: self.port}
        if self.health_port:
            ports[f"{self.name} health"] = self.health_port
        return ports


def mesh_specs(
    ports: dict[str, int] | None = None,
    port_offset: int = 0,
    data_dir: Path = Path("var/data"),
    fault_injection: bool = False,
    env: dict[str, str] | None = None,
    embedder_backends: dict[str, str] | None = None,
    certs_dir: Path | None = None,
    health_ports: dict[str, int] | None = None,
) -> list[ProcessSpec]:
    """The seven processes; `ports` maps a process name to a port (defaults otherwise);
    `embedder_backends` maps an embedder impl ("primary") to its HARAG_EMBEDDER_BACKEND
    (unset: the impl's hashed default).

    With `certs_dir` (harag_cli.certs.create_mesh_certificates wrote it) the mesh runs with
    mTLS: each process presents its own certificate, components accept the gateway and the
    operator identity (the CLI's direct calls), and each process serves plaintext health
    on `health_ports[name]` (default its port + HEALTH_PORT_OFFSET) for the supervisor.
    """
    ports = dict(ports or {})
    health_ports = dict(health_ports or {})

    def secured(name: str, port: int, proc_env: dict[str, str]) -> int | None:
        if certs_dir is None:
            return None
        health_port = health_ports.get(name, port + HEALTH_PORT_OFFSET)
        proc_env.update(tls_env(certs_dir, name))
        proc_env["HARAG_HEALTH_PORT"] = str(health_port)
        return health_port

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
            if component == "embedder" and impl in (embedder_backends or {}):
                proc_env["HARAG_EMBEDDER_BACKEND"] = (embedder_backends or {})[impl]
            health_port = secured(name, port, proc_env)
            if health_port is not None:
                proc_env["HARAG_TLS_ALLOWED_PEERS"] = f"{GATEWAY_IDENTITY},{OPERATOR_IDENTITY}"
            argv = [sys.executable, "-m", f"{component}_svc", "--impl", impl]
            specs.append(ProcessSpec(name, argv, port, proc_env, health_port))
            chains.setdefault(component, []).append(f"{name}=127.0.0.1:{port}")
    gateway_port = ports.get("gateway", GATEWAY_PORT + port_offset)
    gateway_env = {
        **(env or {}),
        "HARAG_PORT": str(gateway_port),
        "OTEL_SERVICE_NAME": "gateway",
        # Queued retriever writes and ingest jobs (without Redis) live beside the indexes.
        "HARAG_OUTBOX_STATE_DIR": str(data_dir / "gateway"),
        "HARAG_FEEDBACK_STATE_DIR": str(data_dir / "gateway"),
        **{f"HARAG_{c.upper()}_CHAIN": ",".join(v) for c, v in chains.items()},
    }
    gateway_health = secured("gateway", gateway_port, gateway_env)
    specs.append(
        ProcessSpec(
            "gateway", [sys.executable, "-m", "gateway"], gateway_port, gateway_env, gateway_health
        )
    )
    return specs


LineSink = Callable[[str, str], None]


def print_sink(name: str, line: str) -> None:
    print(f"{name:<18}| {line}", flush=True)


class Supervisor:
    def __init__(
        self,
        specs: list[ProcessSpec],
        sink: LineSink = print_sink,
        restart: bool = True,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.sink = sink
        self.restart = restart
        self.policy = policy or RestartPolicy()
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.last_exit: dict[str, int | None] = dict.fromkeys(self.specs)
        self.gave_up: dict[str, str] = {}  # name -> why it is no longer restarted
        self.tails: dict[str, deque[str]] = {n: deque(maxlen=TAIL_LINES) for n in self.specs}
        self._backoff_step: dict[str, int] = dict.fromkeys(self.specs, 0)
        self._failed_starts: dict[str, int] = dict.fromkeys(self.specs, 0)
        self._seen_serving: set[int] = set()  # pids of children that reported SERVING
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def ports_in_use(self) -> dict[str, int]:
        """Processes whose port something else already listens on (process name -> port)."""
        return taken_ports(
            {name: port for spec in self.specs.values() for name, port in spec.ports().items()}
        )

    async def start(self) -> None:
        """Starts every process; raises StartupError, with nothing started, if a port is taken.

        Without that check a process would fail to bind while the health probe reached the
        other server on its port and reported SERVING for it.
        """
        taken = self.ports_in_use()
        if taken:
            name, port = next(iter(taken.items()))
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise StartupError(f"port {port} for {name} is already in use{more}")
        for spec in self.specs.values():
            await self._spawn(spec)
        self._tasks += [asyncio.create_task(self._babysit(name)) for name in self.specs]

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
            line = raw.decode(errors="replace").rstrip()
            self.tails[name].append(line)
            self.sink(name, line)

    async def is_serving(self, name: str) -> bool:
        """SERVING from the process this supervisor started, alive and holding its port.

        A probe alone is not enough: while our child starts up (or after it died), another
        server on the same port would answer for it.
        """
        proc = self.procs.get(name)
        if proc is None or proc.returncode is not None:
            return False
        spec = self.specs[name]
        if await probe(spec.probe_address) != "SERVING" or proc.returncode is not None:
            return False
        if listens_on(proc.pid, spec.port) is False:
            return False
        self._seen_serving.add(proc.pid)
        return True

    async def _watch_start(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """Probes a starting process until it is SERVING or exits."""
        while proc.returncode is None and proc.pid not in self._seen_serving:
            if await self.is_serving(name):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), self.policy.start_poll_s)

    def _output_tail(self, name: str) -> str:
        lines = list(self.tails[name])
        return "; last output:\n" + "\n".join(f"  {line}" for line in lines) if lines else ""

    async def _babysit(self, name: str) -> None:
        """Restarts the process whenever it exits while the mesh is supposed to run."""
        policy = self.policy
        while True:
            proc = self.procs[name]
            started = time.monotonic()
            await self._watch_start(name, proc)
            code = await proc.wait()
            reached_serving = proc.pid in self._seen_serving
            self._seen_serving.discard(proc.pid)  # the pid may be reused by another process
            self.last_exit[name] = code
            if self._stopping or not self.restart:
                return
            if reached_serving:
                self._failed_starts[name] = 0
                if time.monotonic() - started >= policy.stable_after_s:
                    self._backoff_step[name] = 0
            else:
                self._failed_starts[name] += 1
            if self._failed_starts[name] >= policy.give_up_after:
                self.gave_up[name] = (
                    f"{name} exited with code {code} {self._failed_starts[name]} times in a row "
                    "before reaching SERVING; not restarting it" + self._output_tail(name)
                )
                self.sink("supervisor", self.gave_up[name])
                return
            step = self._backoff_step[name]
            delay = policy.backoff_s[min(step, len(policy.backoff_s) - 1)]
            self._backoff_step[name] = step + 1
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
        """Waits until every process it started reports SERVING; names the first that cannot.

        With `fail_on_exit` (start-up), a process that exits before SERVING fails at once
        instead of being restarted until the timeout.
        """
        deadline = time.monotonic() + timeout_s
        restarts_before = dict(self.restarts)
        pending = list(names or self.specs)
        while pending:
            for name in pending:  # every exit is noticed at once, not in turn
                if name in self.gave_up:
                    raise StartupError(self.gave_up[name])
                proc = self.procs[name]
                died = proc.returncode is not None or self.restarts[name] > restarts_before[name]
                if died and (fail_on_exit or not self.restart):
                    code = proc.returncode if proc.returncode is not None else self.last_exit[name]
                    raise StartupError(
                        f"{name} exited with code {code} during start-up" + self._output_tail(name)
                    )
            serving = await asyncio.gather(*(self.is_serving(name) for name in pending))
            pending = [name for name, ok in zip(pending, serving, strict=True) if not ok]
            if pending and time.monotonic() > deadline:
                raise StartupError(f"{pending[0]} did not report SERVING within {timeout_s:g}s")
            if pending:
                await asyncio.sleep(self.policy.start_poll_s)

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
