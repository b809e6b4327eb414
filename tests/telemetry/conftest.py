"""Telemetry fixtures: the built-in trace viewer as the OTLP receiver, and a mesh exporting to it.

The mesh's processes use the real OTLP/gRPC span exporter (BatchSpanProcessor, flushed
every 100 ms) pointed at a TraceViewer running in the test process, so the tests read
exactly what Jaeger would receive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from meshes import MESH_NAMES, Mesh, start_mesh
from processes import LogBook

from harag.v1 import gateway_pb2
from harag_cli.corpus import sample_corpus
from harag_cli.traceview.receiver import TraceViewer
from harag_cli.traceview.store import TraceStore

# Deterministic attempts: one try per upstream, no hedges, no cache, and a health-NOT_SERVING
# upstream is still called, so a "down" primary produces a real failed RPC in the trace.
MESH_ENV = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "HARAG_RETRY_MAX_ATTEMPTS": "1",
    "HARAG_HEDGE_ENABLED": "false",
    "HARAG_CACHE_TTL_S": "0",
    "HARAG_SKIP_NOT_SERVING": "false",
    # The tests count requests exactly: admission control keeps probing (a test checks its
    # probes are not traced) but only sheds behind a standing queue no test run here builds,
    # even on a machine busy with other work.
    "HARAG_ADMISSION_QUEUE_TARGET_S": "2",
}


@pytest.fixture(scope="package")
async def viewer() -> AsyncIterator[TraceViewer]:
    running = TraceViewer(TraceStore(), "127.0.0.1", otlp_port=0, api_port=0)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="package")
async def traced_mesh(
    viewer: TraceViewer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    logs = LogBook()
    env = {**MESH_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": viewer.otlp_endpoint}
    mesh = await start_mesh(tmp_path_factory.mktemp("traced-mesh"), logs, env=env)
    reply = await mesh.gateway.Ingest(
        gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
    )
    assert reply.failed == 0
    for name in MESH_NAMES[1:]:
        await mesh.wait_gateway_sees(name, "SERVING")
    yield mesh
    await mesh.channel.close()
    codes = await mesh.supervisor.stop()
    assert all(code == 0 for code in codes.values()), codes
