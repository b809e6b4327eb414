"""Issue 17, the index-update pipeline, against real processes: every write to a retriever
goes through its durable outbox (SQLite without Redis, a Redis Stream with a real
redis-server), a retriever that is down or frozen gets its writes in order when it is back,
a gateway killed between reading and acking leaves its writes to another, and large corpora
go through ingest jobs."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from meshes import NO_CACHE, Mesh
from processes import LogBook
from waiting import wait_until

from harag.v1 import (
    common_pb2,
    fault_injection_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli.localports import free_port
from harag_cli.supervisor import ProcessSpec, Supervisor, mesh_specs
from servicekit.ports import COMPONENT_NAMES

PRIMARY, FALLBACK = "retriever-primary", "retriever-fallback"
WRITE = gateway_pb2.WriteStatus
STATUS = gateway_pb2.IngestStatus
FAST = {"HARAG_OUTBOX_LEASE_S": "1", "HARAG_OUTBOX_MAX_BACKOFF_S": "0.2"}


@asynccontextmanager
async def pipeline_mesh(tmp: Path, env: dict[str, str]) -> AsyncIterator[Mesh]:
    """The seven processes with fault injection; nothing restarts a process a test kills."""
    logs = LogBook()
    ports = {name: free_port() for name in ("gateway", *COMPONENT_NAMES)}
    specs = mesh_specs(
        ports=ports, data_dir=tmp / "data", fault_injection=True, env={**NO_CACHE, **FAST, **env}
    )
    supervisor = Supervisor(specs, sink=logs, restart=False)
    await supervisor.start()
    try:
        await supervisor.wait_serving(timeout_s=60)
        mesh = Mesh(specs, supervisor, logs)
        for name in COMPONENT_NAMES:
            await mesh.wait_gateway_sees(name, "SERVING")
        yield mesh
        await mesh.channel.close()
    except BaseException:
        print("\n".join(f"{n}| {line}" for n, line in logs.lines[-60:]))
        raise
    finally:
        for proc in supervisor.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
        await supervisor.stop()


def backend_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        return {"HARAG_REDIS_URL": server.url}
    return {}


def documents(n: int, tag: str) -> list[common_pb2.Document]:
    return [
        common_pb2.Document(
            id=f"{tag}/{i:05d}", text=f"{tag} note {i}: the {tag}{i} valve opens at dawn."
        )
        for i in range(n)
    ]


async def held_by(mesh: Mesh, name: str, ids: list[str]) -> dict[str, str]:
    """The content hashes a retriever holds for these ids (asked directly)."""
    async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        held: dict[str, str] = {}
        for start in range(0, len(ids), 1000):
            reply = await stub.GetDocumentHashes(
                retriever_pb2.GetDocumentHashesRequest(document_ids=ids[start : start + 1000]),
                timeout=10,
            )
            held |= dict(reply.content_hashes)
        return held


async def stored_count(mesh: Mesh, name: str) -> int:
    async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
        return stats.documents


async def outboxes(
    stub: gateway_pb2_grpc.RagGatewayServiceStub,
) -> dict[str, gateway_pb2.OutboxStatus]:
    reply = await stub.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
    return {o.retriever: o for o in reply.outboxes}


async def drained(stub: gateway_pb2_grpc.RagGatewayServiceStub) -> bool:
    boxes = await outboxes(stub)
    return bool(boxes) and all(o.backlog == 0 for o in boxes.values())


def write_of(result: gateway_pb2.IngestResult | gateway_pb2.DeleteResult, name: str) -> int:
    return next(w.status for w in result.writes if w.retriever == name)


# Several meshes, Redis and SIGKILLs on two shared cores: one rerun when load makes it miss.
@pytest.mark.flaky(reruns=1)
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_writes_while_primary_is_down_are_queued_then_applied_in_order(
    backend, request, tmp_path
):
    async with pipeline_mesh(tmp_path, backend_env(backend, request)) as mesh:
        await mesh.set_fault(PRIMARY, fault_injection_pb2.Fault(down=True))
        docs = documents(500, "down")
        ids = [d.id for d in docs]
        replies = [
            await mesh.gateway.Ingest(
                gateway_pb2.IngestRequest(documents=docs[start : start + 250]), timeout=60
            )
            for start in (0, 250)
        ]
        results = [r for reply in replies for r in reply.results]
        assert [r.status for r in results] == [STATUS.INGEST_STATUS_QUEUED] * 500, results[0]
        assert all(write_of(r, PRIMARY) == WRITE.WRITE_STATUS_QUEUED for r in results)
        assert all(write_of(r, FALLBACK) == WRITE.WRITE_STATUS_INDEXED for r in results)
        assert sum(r.queued for r in replies) == 500 and sum(r.succeeded for r in replies) == 0
        assert len(await held_by(mesh, FALLBACK, ids)) == 500

        # Deleted while still down: queued after the upserts, so it must win on the primary.
        deleted = ids[:50]
        gone = await mesh.gateway.DeleteDocuments(
            gateway_pb2.DeleteDocumentsRequest(ids=deleted), timeout=30
        )
        assert all(write_of(r, PRIMARY) == WRITE.WRITE_STATUS_QUEUED for r in gone.results)
        assert all(r.missing == [PRIMARY] for r in gone.results)
        assert all(
            write_of(r, FALLBACK) == WRITE.WRITE_STATUS_INDEXED and r.found for r in gone.results
        )
        boxes = await outboxes(mesh.gateway)
        assert boxes[PRIMARY].backlog > 0 and boxes[PRIMARY].backend == backend

        await mesh.clear_faults(PRIMARY)
        await wait_until(lambda: drained(mesh.gateway), what="outboxes drained", timeout_s=60)
        held = await held_by(mesh, PRIMARY, ids)
        assert sorted(held) == ids[50:]
        assert await stored_count(mesh, PRIMARY) == 450
        answer = await mesh.gateway.Query(
            gateway_pb2.QueryRequest(query="When does the down321 valve open?", top_k=3),
            timeout=10,
        )
        assert not answer.degraded and answer.sources[0].id == "down/00321"
        boxes = await outboxes(mesh.gateway)
        assert all(o.dead_letters == 0 for o in boxes.values())


async def test_a_frozen_retriever_does_not_hold_ingest_past_the_callers_deadline(tmp_path):
    async with pipeline_mesh(tmp_path, {}) as mesh:
        mesh.supervisor.kill(PRIMARY, signal.SIGSTOP)
        try:
            docs = documents(20, "frozen")
            started = time.monotonic()
            reply = await mesh.gateway.Ingest(gateway_pb2.IngestRequest(documents=docs), timeout=3)
            elapsed = time.monotonic() - started
        finally:
            mesh.supervisor.kill(PRIMARY, signal.SIGCONT)
        assert elapsed < 3.0
        assert all(r.status == STATUS.INGEST_STATUS_QUEUED for r in reply.results), reply.results[0]
        assert all(write_of(r, PRIMARY) == WRITE.WRITE_STATUS_QUEUED for r in reply.results)
        assert all(write_of(r, FALLBACK) == WRITE.WRITE_STATUS_INDEXED for r in reply.results)
        await wait_until(lambda: drained(mesh.gateway), what="outboxes drained", timeout_s=60)
        assert len(await held_by(mesh, PRIMARY, [d.id for d in docs])) == 20


def gateway_spec(mesh: Mesh, name: str) -> ProcessSpec:
    base = mesh.specs["gateway"]
    port = free_port()
    return ProcessSpec(name, base.argv, port, {**base.env, "HARAG_PORT": str(port)})


async def test_a_gateway_killed_between_reading_and_acking_leaves_its_writes_to_another(
    redis_server, tmp_path
):
    env = {"HARAG_REDIS_URL": redis_server.url}
    async with pipeline_mesh(tmp_path, env) as mesh:
        # The primary takes every write and never answers: gateway A reads them and waits.
        await mesh.set_fault(
            PRIMARY, fault_injection_pb2.Fault(hang=True, methods=["ReplaceDocuments"])
        )
        docs = documents(100, "crash")
        ids = [d.id for d in docs]
        reply = await mesh.gateway.Ingest(gateway_pb2.IngestRequest(documents=docs), timeout=3)
        assert all(write_of(r, PRIMARY) == WRITE.WRITE_STATUS_QUEUED for r in reply.results)
        client = redis_server.client()
        stream = f"harag:outbox:{PRIMARY}"

        async def pending_at_a() -> int:
            summary = await client.xpending(stream, "delivery")
            return int(summary["pending"])

        await wait_until(pending_at_a, what="gateway A holds unacked entries")
        mesh.supervisor.kill("gateway", signal.SIGKILL)
        await mesh.control.clear_faults([PRIMARY])

        b = Supervisor([gateway_spec(mesh, "gateway-b")], sink=mesh.logs, restart=False)
        await b.start()
        try:
            await b.wait_serving(30)
            async with grpc.aio.insecure_channel(b.specs["gateway-b"].address) as channel:
                stub = gateway_pb2_grpc.RagGatewayServiceStub(channel)
                await wait_until(lambda: drained(stub), what="B drained A's entries", timeout_s=60)
            assert sorted(await held_by(mesh, PRIMARY, ids)) == ids
            assert await stored_count(mesh, PRIMARY) == 100  # each stored once
            assert int((await client.xpending(stream, "delivery"))["pending"]) == 0
            assert await client.xlen(stream) == 0
            assert await client.xlen(f"harag:outbox-dead:{PRIMARY}") == 0
        finally:
            await client.aclose()
            await b.stop()


async def test_an_ingest_job_of_20000_documents_reports_progress_and_completes(tmp_path):
    # Fewer, larger writes: 20,000 one-chunk documents in 79 writes per retriever, not 313.
    async with pipeline_mesh(tmp_path, {"HARAG_INGEST_BATCH_SIZE": "256"}) as mesh:
        docs = documents(20_000, "job")

        async def batches() -> AsyncIterator[gateway_pb2.StartIngestJobRequest]:
            for start in range(0, len(docs), 500):
                yield gateway_pb2.StartIngestJobRequest(documents=docs[start : start + 500])

        started = await mesh.gateway.StartIngestJob(batches(), timeout=60)
        assert started.accepted == 20_000 and started.job_id
        seen: list[gateway_pb2.GetIngestJobResponse] = []

        async def done() -> bool:
            job = await mesh.gateway.GetIngestJob(
                gateway_pb2.GetIngestJobRequest(job_id=started.job_id), timeout=5
            )
            seen.append(job)
            return job.state == gateway_pb2.INGEST_JOB_STATE_DONE

        await wait_until(done, what="the job is done", timeout_s=600, interval_s=0.5)
        final = seen[-1]
        assert final.accepted == 20_000 and final.embedded == 20_000 and final.failed == 0
        assert {r.retriever: (r.queued, r.indexed, r.failed) for r in final.retrievers} == {
            PRIMARY: (20_000, 20_000, 0),
            FALLBACK: (20_000, 20_000, 0),
        }
        # Progress was visible on the way, not only the end.
        assert any(0 < j.embedded < 20_000 for j in seen), [j.embedded for j in seen]
        assert await stored_count(mesh, PRIMARY) == 20_000
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await mesh.gateway.GetIngestJob(
                gateway_pb2.GetIngestJobRequest(job_id="no-such-job"), timeout=5
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
