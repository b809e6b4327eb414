"""Fresh local processes for one benchmark scenario: the mesh, extra gateways, faults.

The same Supervisor and process specs as `harag up`, on free loopback ports and a
throw-away data directory, with the sample corpus ingested. Every process logs at WARNING:
at INFO the gateway writes a line per query, and reading those lines would cost the load
generator (which runs the supervisor) CPU it needs to generate load.
"""

from __future__ import annotations

import asyncio
import collections
import os
import resource
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from harag.v1 import fault_injection_pb2, gateway_pb2, gateway_pb2_grpc
from harag_cli.corpus import sample_corpus
from harag_cli.localports import free_port
from harag_cli.meshctl import MeshControl, admin_address
from harag_cli.supervisor import ProcessSpec, Supervisor, mesh_specs
from servicekit.ports import COMPONENT_NAMES

COMPONENTS = COMPONENT_NAMES
QUIET = {"HARAG_LOG_LEVEL": "WARNING", "HARAG_METRICS_PORT": "0"}


def cpu_seconds_of(pid: int) -> float:
    try:
        # Fields after the command name (which may contain spaces): utime is 14th, stime 15th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of_tree(pid: int) -> float:
    """CPU time of a process and its live children (a gateway's `--workers`)."""
    try:
        children = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:
        children = ""
    return cpu_seconds_of(pid) + sum(cpu_seconds_of(int(c)) for c in children.split())


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tail:
    """The last lines every process wrote, to explain a failure."""

    def __init__(self, keep: int = 200) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)

    def __call__(self, name: str, line: str) -> None:
        self.lines.append(f"{name:<18}| {line}")


class BenchMesh:
    """`async with BenchMesh(env=...) as mesh:` starts seven processes and ingests the corpus."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        gateway_env: Mapping[str, str] | None = None,
        component_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="harag-bench-")
        ports = {name: free_port() for name in ("gateway", *COMPONENTS)}
        self.specs = mesh_specs(
            ports=ports,
            data_dir=Path(self._tmp.name),
            fault_injection=True,
            env={**QUIET, **(env or {})},
        )
        for spec in self.specs:
            spec.env.update((component_env or {}).get(spec.name, {}))
            if spec.name == "gateway":
                spec.env.update(gateway_env or {})
        self.tail = Tail()
        self.supervisor = Supervisor(self.specs, sink=self.tail)
        self.by_name = {s.name: s for s in self.specs}
        self.gateway_address = self.by_name["gateway"].address
        self._extra: list[Supervisor] = []
        self.control = MeshControl(
            {s.name: s.address for s in self.specs}, self.gateway_address, keep_channels=True
        )

    async def __aenter__(self) -> BenchMesh:
        await self.supervisor.start()
        try:
            await self.supervisor.wait_serving(timeout_s=90)
            reply = await self.gateway().Ingest(
                gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
            )
            if reply.failed:
                raise RuntimeError(f"{reply.failed} corpus documents failed to ingest")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        await self.control.close()
        for supervisor in self._extra:
            await supervisor.stop()
        await self.supervisor.stop()
        self._tmp.cleanup()

    def channel(self, address: str) -> grpc.aio.Channel:
        return self.control.channel(address)

    def gateway(self, address: str | None = None) -> gateway_pb2_grpc.RagGatewayServiceStub:
        return gateway_pb2_grpc.RagGatewayServiceStub(self.channel(address or self.gateway_address))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each mesh process and by this (load generator) process."""
        out = {"load generator": own_cpu_seconds()}
        for supervisor in (self.supervisor, *self._extra):
            for name, proc in supervisor.procs.items():
                out[name] = cpu_seconds_of_tree(proc.pid)
        return out

    def pid(self, name: str) -> int:
        return self.supervisor.procs[name].pid

    def extra_pid(self, name: str) -> int:
        """The pid of a gateway started by `add_gateway`."""
        return next(s.procs[name].pid for s in self._extra if name in s.procs)

    async def add_gateway(
        self, name: str, env: Mapping[str, str], argv_extra: Sequence[str] = ()
    ) -> str:
        """Another gateway process over the same components; returns its address."""
        base = self.by_name["gateway"]
        port = free_port()
        spec = ProcessSpec(
            name, [*base.argv, *argv_extra], port, {**base.env, "HARAG_PORT": str(port), **env}
        )
        supervisor = Supervisor([spec], sink=self.tail, restart=False)
        self._extra.append(supervisor)
        await supervisor.start()
        await supervisor.wait_serving(timeout_s=60)
        return spec.address

    async def add_process(self, name: str, argv: Sequence[str], port: int) -> str:
        """Another process listening on `port` (health-checked); returns its address."""
        spec = ProcessSpec(name, list(argv), port, dict(QUIET))
        supervisor = Supervisor([spec], sink=self.tail, restart=False)
        self._extra.append(supervisor)
        await supervisor.start()
        await supervisor.wait_serving(timeout_s=60)
        return spec.address

    async def set_fault(self, name: str, fault: fault_injection_pb2.Fault) -> None:
        await self.control.set_fault(name, fault)

    async def clear_faults(self, *names: str) -> None:
        await self.control.clear_faults(names)

    async def injected(self, name: str) -> int:
        """Calls that met the active fault so far (every call, for a 100% fault)."""
        return (await self.control.get_faults(name)).injected_total

    async def gateway_metric(self, port: int, name: str, method: str = "Query") -> float:
        """One Prometheus sample of a gateway started with HARAG_METRICS_PORT=`port`."""

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                return reply.read().decode()

        for line in (await asyncio.to_thread(scrape)).splitlines():
            if line.startswith(name + "{") and f'method="{method}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def breakers(self, gateway: str | None = None) -> dict[str, str]:
        """Breaker state name per upstream of a gateway (this mesh's by default)."""
        return await self.control.breaker_states(admin_address(gateway) if gateway else None)
