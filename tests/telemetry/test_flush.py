"""SIGTERM flushes spans still waiting in the batch processor before the process exits."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys

import grpc
from waiting import wait_until

from harag.v1 import embedder_pb2, embedder_pb2_grpc
from harag_cli.supervisor import probe
from harag_cli.traceview.receiver import TraceViewer
from telemetry.support import wait_for_trace

CALLS = 3


async def test_sigterm_flushes_pending_spans(viewer: TraceViewer, unused_tcp_port: int) -> None:
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": viewer.otlp_endpoint,
        "OTEL_SERVICE_NAME": "flush-probe",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # no timed export: only shutdown can send them
        "HARAG_PORT": str(unused_tcp_port),
        "HARAG_METRICS_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "embedder_svc",
        "--impl",
        "primary",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    address = f"127.0.0.1:{unused_tcp_port}"
    try:

        async def serving() -> bool:
            return await probe(address) == "SERVING"

        await wait_until(serving, what="the embedder serving")
        # Our own trace id, sent as the W3C parent, so we know which trace to look for.
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        async with grpc.aio.insecure_channel(address) as channel:
            stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
            for i in range(CALLS):
                await stub.Embed(
                    embedder_pb2.EmbedRequest(texts=[f"flush me {i}"]),
                    metadata=(("traceparent", traceparent),),
                    timeout=5,
                )
        # An absence can only be checked after a pause: nothing may arrive within 0.3 s.
        await asyncio.sleep(0.3)
        assert viewer.store.get(trace_id) is None, "spans were exported before shutdown"
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output.decode()
    spans = await wait_for_trace(
        viewer.store, trace_id, lambda spans: len(spans) == 2 * CALLS, timeout_s=2
    )
    assert {s.service for s in spans} == {"flush-probe"}
    assert sorted(s.name for s in spans) == sorted(
        ["harag.v1.EmbedderService/Embed", "embed batch"] * CALLS
    )
