"""`harag demo`: watch the mesh take failures, degrade, and recover, in six phases.

It uses the mesh at `--addr` when one is running there (started with `harag up
--fault-injection`), or starts its own for the length of the demo. Its own mesh uses short
breaker waits and a short answer cache (DEMO_GATEWAY_ENV), so that a breaker's whole
cycle and a stale answer both fit in a one-minute demo. While the printed queries run, a
few background workers keep sending other queries, as real users would; breakers act on
that aggregate traffic. Exit code 0 means every query got an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import grpc

from harag.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
)
from harag_cli import demo_view as view
from harag_cli.certs import LOCAL_CERTS_DIR, component_channel, ensure_mesh_certificates
from harag_cli.clients import keyed_channel, resolve_api_key
from harag_cli.corpus import sample_corpus
from harag_cli.demo_script import Phase, describe, phases, questions
from harag_cli.demo_watch import (
    OPEN_STATES,
    BackgroundLoad,
    BreakerWatch,
    QueryRecord,
    Recorder,
    record_of,
)
from harag_cli.localports import free_port, taken_ports
from harag_cli.meshctl import MeshControl, admin_address, discover, gateway_address
from harag_cli.supervisor import (
    HEALTH_PORT_OFFSET,
    StartupError,
    Supervisor,
    mesh_specs,
    probe,
)
from servicekit.ports import process_ports

DEMO_GATEWAY_ENV = {
    "HARAG_BREAKER_MINIMUM_CALLS": "5",
    "HARAG_BREAKER_WINDOW_SIZE": "10",
    "HARAG_BREAKER_WAIT_IN_OPEN_S": "2",
    "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "8",
    "HARAG_CACHE_TTL_S": "2",  # questions repeat across phases; a fresh hit would hide them
    "HARAG_LOG_LEVEL": "WARNING",
}
QUERY_DEADLINE_S = 3.0
RECOVERY_LIMIT_S = 90.0  # longest wait for every breaker to close in the last phase
OPEN_LIMIT_S = 30.0  # longest a phase keeps asking while waiting for a breaker to open


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="inject failures phase by phase and watch the mesh degrade")
    p.add_argument("--addr", help="gateway host:port (default: $HARAG_GATEWAY or 127.0.0.1:50051)")
    p.add_argument("--api-key", help="API key with query and admin scopes (default: see README)")
    p.add_argument(
        "--port-offset", type=int, help="use the mesh started with `harag up --port-offset N`"
    )
    p.add_argument("--interactive", action="store_true", help="wait for Enter between phases")
    p.add_argument("--queries", type=int, default=4, help="printed queries per phase")
    p.add_argument("--pause", type=float, default=0.8, help="seconds between printed queries")
    p.add_argument("--background", type=int, default=3, help="background query workers")
    p.set_defaults(func=demo)


async def start_own_mesh(addr: str, data_dir: Path) -> Supervisor:
    """Seven processes with fault injection; components on their default ports when free."""
    host, _, port = addr.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise StartupError(f"no gateway at {addr}, and a mesh can only be started on 127.0.0.1")
    defaults = {name: p for name, p in process_ports().items() if name != "gateway"}
    # Each process also serves plaintext health beside its mTLS port.
    health_defaults = {name: p + HEALTH_PORT_OFFSET for name, p in defaults.items()}
    use_defaults = not taken_ports(defaults) and not taken_ports(health_defaults)
    ports = {n: (p if use_defaults else free_port()) for n, p in defaults.items()}
    health_ports = {n: (p if use_defaults else free_port()) for n, p in health_defaults.items()}
    ports["gateway"] = int(port)
    health_ports["gateway"] = free_port()
    # Like `harag up`, with mTLS, and the certificates where the CLI finds them.
    ensure_mesh_certificates(LOCAL_CERTS_DIR)
    specs = mesh_specs(
        ports=ports,
        data_dir=data_dir,
        fault_injection=True,
        certs_dir=LOCAL_CERTS_DIR,
        health_ports=health_ports,
    )
    for spec in specs:
        spec.env["HARAG_LOG_LEVEL"] = "WARNING"
    next(s for s in specs if s.name == "gateway").env.update(DEMO_GATEWAY_ENV)
    tail: deque[str] = deque(maxlen=40)
    supervisor = Supervisor(specs, sink=lambda name, line: tail.append(f"{name:<18}| {line}"))
    await supervisor.start()
    try:
        await supervisor.wait_serving(timeout_s=60)
    except StartupError:
        await supervisor.stop()
        print("\n".join(tail), file=sys.stderr)
        raise
    return supervisor


class Demo:
    def __init__(
        self, args: argparse.Namespace, channel: grpc.aio.Channel, admin: grpc.aio.Channel
    ) -> None:
        self.args = args
        self.style = view.Style.for_stdout()
        self.gateway = gateway_pb2_grpc.RagGatewayServiceStub(channel)
        self.recorder = Recorder()
        self.watch = BreakerWatch(admin)
        self.background = BackgroundLoad(
            self.gateway, self.recorder, questions(), workers=args.background
        )
        self.control = MeshControl(
            {},
            args.addr,
            api_key=args.api_key,
            component_channel=component_channel(LOCAL_CERTS_DIR),
        )
        self.active: dict[str, view.Episode] = {}  # upstream -> its current fault episode
        self.episodes: list[view.Episode] = []
        self.failures = 0

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    async def discover(self) -> None:
        """Component addresses come from the gateway, so any ports work."""
        self.control.addresses = await discover(self.args.addr, self.args.api_key)
        for name, address in self.control.addresses.items():
            try:
                await self.control.get_faults(name)
            except grpc.aio.AioRpcError as exc:
                raise StartupError(
                    f"{name} ({address}) does not serve fault injection ({exc.code().name}); "
                    "restart the mesh with `harag up --fault-injection`, or stop it and let "
                    "`harag demo` start its own"
                ) from None

    async def apply_faults(self, phase: Phase) -> None:
        now = time.monotonic()
        for name in [n for n in self.active if n not in phase.faults]:
            await self.control.clear_faults([name])
            self.active.pop(name).cleared_at = time.monotonic()
        for name, fault in phase.faults.items():
            await self.control.set_fault(name, fault)
            if name in self.active:
                self.active[name].cleared_at = now
            episode = view.Episode(name, phase.number, describe(fault), time.monotonic())
            self.active[name] = episode
            self.episodes.append(episode)
            self.say(f"  injected: {name} {self.style.paint(describe(fault), 'red')}")

    async def clear_all(self) -> None:
        for name in self.control.addresses:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.control.clear_faults([name])
        await self.control.close()

    async def ask(self, label: str, question: str) -> None:
        started = time.perf_counter()
        try:
            reply = await self.gateway.Query(
                gateway_pb2.QueryRequest(query=question), timeout=QUERY_DEADLINE_S
            )
        except grpc.aio.AioRpcError as exc:
            self.failures += 1
            latency = time.perf_counter() - started
            self.recorder.records.append(
                QueryRecord(self.recorder.phase, latency, exc.code().name, foreground=True)
            )
            self.say(
                view.failed_block(
                    self.style, label, question, exc.code().name, exc.details() or "", latency
                )
            )
            return
        latency = time.perf_counter() - started
        self.recorder.records.append(record_of(self.recorder.phase, reply, latency, True))
        states = await self.watch.poll()
        self.say(view.query_block(self.style, label, question, reply, latency, states))

    async def wait_for_recovery(self) -> None:
        started = time.monotonic()
        while not self.watch.all_closed() and time.monotonic() - started < RECOVERY_LIMIT_S:
            await asyncio.sleep(0.2)
            await self.watch.poll()
        waited = time.monotonic() - started
        if self.watch.all_closed():
            self.say(f"  every breaker CLOSED again ({waited:.1f} s after the last query above)")
        else:
            self.say(
                self.style.paint(f"  breakers still not all CLOSED after {waited:.0f} s", "red")
            )

    async def until_open(self, phase: Phase, asked: int) -> None:
        """Keeps asking until the breaker opens, then twice more to show the fast failure."""
        upstream = phase.until_open
        assert upstream is not None
        fault_at = self.active[upstream].set_at
        pool = questions()
        while (
            self.watch.states.get(upstream) not in OPEN_STATES
            and time.monotonic() - fault_at < OPEN_LIMIT_S
        ):
            asked += 1
            await asyncio.sleep(self.args.pause)
            await self.ask(f"Q{phase.number}.{asked}", pool[(7 * asked) % len(pool)])
        opened = self.watch.first(upstream, OPEN_STATES, fault_at)
        if opened is None:
            self.say(self.style.paint(f"  {upstream}'s breaker did not open", "red"))
            return
        self.say(
            self.style.paint(
                f"  {upstream}'s breaker opened {opened - fault_at:.1f} s after "
                "the fault: calls to it now fail fast",
                "bold",
            )
        )
        for _ in range(2):
            asked += 1
            await asyncio.sleep(self.args.pause)
            await self.ask(f"Q{phase.number}.{asked}", pool[(7 * asked) % len(pool)])

    async def run_phase(self, phase: Phase) -> None:
        self.recorder.phase = phase.number
        self.say(view.phase_header(self.style, phase.number, phase.title, phase.explain))
        await self.apply_faults(phase)
        for i, question in enumerate(phase.questions, start=1):
            await asyncio.sleep(self.args.pause)
            await self.ask(f"Q{phase.number}.{i}", question)
        if phase.until_open is not None:
            await self.until_open(phase, len(phase.questions))
        if phase.wait_for_recovery:
            await self.wait_for_recovery()
        self.say(view.attempt_tally(self.style, self.recorder.of_phase(phase.number)))
        health = await self.gateway.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
        self.say(view.health_block(self.style, health))

    def settle_episodes(self) -> None:
        for e in self.episodes:
            opened = self.watch.first(e.upstream, OPEN_STATES, e.set_at)
            if opened is not None and (e.cleared_at is None or opened <= e.cleared_at):
                e.opened_after_s = opened - e.set_at
            if e.opened_after_s is not None and e.cleared_at is not None:
                if self.watch.state_at(e.upstream, e.cleared_at) == "CLOSED":
                    e.closed_after_s = 0.0  # it had closed again before the fault cleared
                else:
                    closed = self.watch.first(e.upstream, ("CLOSED",), e.cleared_at)
                    e.closed_after_s = None if closed is None else closed - e.cleared_at
            e.skipped = any(
                (e.upstream, "NOT_SERVING") in r.attempts for r in self.recorder.of_phase(e.phase)
            )

    async def run(self, script: list[Phase]) -> int:
        await self.discover()
        await self.watch.poll()
        self.watch.start()
        self.background.start()
        try:
            for phase in script:
                if self.args.interactive:
                    await asyncio.to_thread(
                        input, f"\n[Enter] phase {phase.number}: {phase.title} "
                    )
                await self.run_phase(phase)
        finally:
            await self.background.stop()
            await self.watch.stop()
            await self.clear_all()
        self.settle_episodes()
        titles = {p.number: p.short or p.title for p in script}
        self.say(view.summary(self.style, titles, self.recorder.records, self.episodes))
        failed = sum(not r.ok for r in self.recorder.records)
        self.say(
            f"\n{len(self.recorder.records)} queries, {failed} without an answer."
            + ("" if failed else " Every query was answered, degraded or not.")
        )
        return 0 if failed == 0 else 1


async def demo(args: argparse.Namespace) -> int:
    args.addr = gateway_address(args.addr, args.port_offset)
    args.api_key = resolve_api_key(args.addr, args.api_key)
    supervisor: Supervisor | None = None
    with tempfile.TemporaryDirectory(prefix="harag-demo-") as tmp:
        if await probe(args.addr) == "SERVING":
            print(f"harag demo: using the mesh at {args.addr}", flush=True)
        else:
            print(f"harag demo: no mesh at {args.addr}; starting one (7 processes) ...", flush=True)
            try:
                supervisor = await start_own_mesh(args.addr, Path(tmp))
            except StartupError as exc:
                print(f"harag demo: {exc}", file=sys.stderr)
                return 2
        try:
            async with (
                keyed_channel(args.addr, args.api_key) as channel,
                keyed_channel(admin_address(args.addr), args.api_key) as admin,
            ):
                if supervisor is not None:
                    stub = gateway_pb2_grpc.RagGatewayServiceStub(channel)
                    reply = await stub.Ingest(
                        gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
                    )
                    print(f"harag demo: ingested the sample corpus ({reply.succeeded} documents)")
                try:
                    return await Demo(args, channel, admin).run(phases(args.queries))
                except StartupError as exc:
                    print(f"harag demo: {exc}", file=sys.stderr)
                    return 2
        finally:
            if supervisor is not None:
                await supervisor.stop()
                print("harag demo: stopped the mesh it started", flush=True)
