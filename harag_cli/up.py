"""`harag up`: the whole mesh on loopback, the sample corpus loaded, stopped by Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import grpc

from harag.v1 import (
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli import traces
from harag_cli.clients import api_client
from harag_cli.documents import sample_corpus
from harag_cli.ingesting import ingest_documents
from harag_cli.localports import free_port_offset
from harag_cli.redis_server import LocalRedis, RedisServerError
from harag_cli.supervisor import ProcessSpec, StartupError, Supervisor, mesh_specs
from harag_cli.traceview.receiver import API_PORT, OTLP_PORT, TraceViewer
from servicekit.ports import process_ports


def _port_taken(taken: dict[str, int], port_offset: int) -> str:
    """One line: which process cannot have its port, and an offset that would work."""
    name, port = next(iter(taken.items()))
    more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
    offset = free_port_offset(process_ports().values(), start=port_offset + 100)
    advice = (
        f"start this mesh beside it with `harag up --port-offset {offset}`"
        if offset is not None
        else "stop it or choose a free --port-offset"
    )
    return (
        f"harag up: port {port} for {name} is already in use{more}; "
        f"is another mesh running? {advice}"
    )


MAX_GATEWAYS = 16


def with_replicas(
    specs: list[ProcessSpec], gateways: int, redis_url: str | None
) -> list[ProcessSpec]:
    """`gateways` gateway replicas on consecutive ports from the gateway's (gateway,
    gateway-2, ...; each with its own metrics port), all on `redis_url` when given."""
    base = next(s for s in specs if s.name == "gateway")
    shared = {"HARAG_REDIS_URL": redis_url} if redis_url else {}
    replicas = [
        ProcessSpec(
            "gateway" if i == 0 else f"gateway-{i + 1}",
            base.argv,
            base.port + i,
            {**base.env, **shared, "HARAG_PORT": str(base.port + i)},
        )
        for i in range(gateways)
    ]
    return [s for s in specs if s.name != "gateway"] + replicas


def _replicas_line(specs: list[ProcessSpec], redis: LocalRedis | None) -> str:
    gateways = [s.address for s in specs if s.name.startswith("gateway")]
    if len(gateways) == 1 and redis is None:
        return ""
    shared = f", sharing Redis at {redis.url}" if redis is not None else ", nothing shared"
    return f"  replicas: {len(gateways)} gateways on {', '.join(gateways)}{shared}\n"


def _ready_banner(
    specs: list[ProcessSpec],
    port_offset: int,
    viewer: TraceViewer | None,
    redis: LocalRedis | None = None,
) -> str:
    gateway = next(s for s in specs if s.name == "gateway").address
    flag = f" --port-offset {port_offset}" if port_offset else ""
    tracing = (
        f"  traces:  harag traces{flag}; harag trace{flag} <id>"
        f"  (viewer OTLP in: {viewer.otlp_endpoint})\n"
        if viewer is not None
        else ""
    )
    return (
        f"\nharag up: all {len(specs)} processes SERVING; gateway on {gateway}\n"
        f'  query:   harag query{flag} "How does a circuit breaker decide to open?"\n'
        f"  health:  harag health{flag}\n"
        f"  faults:  harag faults{flag} embedder-primary show  (needs --fault-injection)\n"
        f"  grpcurl: grpcurl -plaintext {gateway} list\n"
        f"{_replicas_line(specs, redis)}"
        f"{tracing}"
        f"  (every command also takes --addr {gateway})\n"
        "Ctrl-C stops everything.\n"
    )


async def up(args: argparse.Namespace) -> int:
    specs = mesh_specs(
        port_offset=args.port_offset,
        data_dir=Path(args.data_dir),
        fault_injection=args.fault_injection,
    )
    redis: LocalRedis | None = None
    if args.redis:
        try:
            redis = LocalRedis()
        except RedisServerError as exc:
            print(f"harag up: {exc}", file=sys.stderr)
            return 1
    specs = with_replicas(specs, args.gateways, redis.url if redis is not None else None)
    supervisor = Supervisor(specs)
    taken = supervisor.ports_in_use()  # before anything starts, so nothing is left running
    if taken:
        print(_port_taken(taken, args.port_offset), file=sys.stderr)
        return 1
    if redis is not None:
        try:
            redis.start()
        except RedisServerError as exc:
            print(f"harag up: {exc}", file=sys.stderr)
            return 1
    try:
        return await _serve(args, specs, supervisor, redis)
    finally:
        if redis is not None:
            redis.close()


async def _serve(
    args: argparse.Namespace,
    specs: list[ProcessSpec],
    supervisor: Supervisor,
    redis: LocalRedis | None,
) -> int:
    viewer, otel_env = await traces.start_viewer_for_mesh(
        not args.no_trace_viewer,
        otlp_port=OTLP_PORT + args.port_offset,
        api_port=API_PORT + args.port_offset,
    )
    for spec in specs:
        spec.env.update(otel_env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await supervisor.start()
        await supervisor.wait_serving(timeout_s=args.start_timeout, fail_on_exit=True)
    except StartupError as exc:
        print(f"harag up: {exc}", file=sys.stderr)
        await supervisor.stop()
        if viewer is not None:
            await viewer.stop()
        return 1
    try:
        if not args.no_ingest:
            await _ingest_sample_corpus(specs)
        print(_ready_banner(specs, args.port_offset, viewer, redis), flush=True)
        await stop.wait()
    finally:  # a failed ingest ends `harag up` too, and leaves no process behind
        codes = await supervisor.stop()
        if viewer is not None:  # after the services, so their last spans still arrive
            await viewer.stop()
    print(f"harag up: stopped ({', '.join(f'{n}={c}' for n, c in codes.items())})", flush=True)
    return 0


async def _ingest_sample_corpus(specs: list[ProcessSpec]) -> None:
    """Loads the sample corpus unless the retrievers kept an index from an earlier run."""
    retriever = next(s for s in specs if s.name == "retriever-primary").address
    async with grpc.aio.insecure_channel(retriever) as channel:
        stats = await retriever_pb2_grpc.RetrieverServiceStub(channel).GetStats(
            retriever_pb2.GetStatsRequest(), timeout=10
        )
    if stats.documents:
        return
    gateway = next(s for s in specs if s.name == "gateway").address
    async with api_client(gateway) as client:
        report = await ingest_documents(client, sample_corpus())
    print(
        f"harag up: ingested the sample corpus ({report.stored} documents, {report.failed} failed)",
        flush=True,
    )
