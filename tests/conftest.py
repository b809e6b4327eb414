"""Shared fixtures: a real seven-process mesh on free loopback ports, started by the same
Supervisor `harag up` uses, with fault injection enabled and the sample corpus ingested."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from meshes import MESH_NAMES, ExtraGateway, Mesh, start_mesh
from processes import LogBook
from redis_support import redis_server  # noqa: F401 - a fixture: a real redis-server per test

from harag.v1 import gateway_pb2
from harag_cli.corpus import SAMPLE_CORPUS, sample_corpus
from harag_cli.supervisor import probe


@pytest.fixture(scope="session")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    logs = LogBook()
    running = await start_mesh(tmp_path_factory.mktemp("mesh"), logs)
    # Every document in every embedding model's index of both retrievers: the tests compare
    # vector spaces. On a busy machine one embedder may miss the ingest's per-call timeout
    # (PARTIAL); an upsert is idempotent, so ingest again rather than run on a partial index.
    for _ in range(3):
        reply = await running.gateway.Ingest(
            gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
        )
        if all(r.status == gateway_pb2.INGEST_STATUS_ACCEPTED for r in reply.results):
            break
    else:
        raise AssertionError([f"{r.id}: {r.reason}" for r in reply.results if r.reason])
    for name in MESH_NAMES:
        await running.wait_gateway_sees(name, "SERVING") if name != "gateway" else None
    yield running
    await running.channel.close()
    codes = await running.supervisor.stop()
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture(scope="session")
def gateway_over() -> type[ExtraGateway]:
    """`gateway_over(mesh, env)`: an extra gateway over any mesh, for module- and package-scoped
    fixtures and other packages' meshes."""
    return ExtraGateway


@pytest.fixture
def extra_gateway(mesh: Mesh):
    """Factory: `async with extra_gateway(HARAG_X="1") as gw: gw.stub.Query(...)`."""
    return lambda **env: ExtraGateway(mesh, env)


@pytest.fixture
async def clean_faults(mesh: Mesh) -> AsyncIterator[Mesh]:
    """A mesh with no faults before and after the test."""
    await mesh.clear_faults()
    await mesh.reset_breakers()
    yield mesh
    await mesh.clear_faults()
    await mesh.reset_breakers()
    for name in MESH_NAMES:
        if await probe(mesh.address(name)) != "SERVING":
            await mesh.wait_serving(name)


@pytest.fixture(scope="session")
def known_questions() -> Iterator[list[dict]]:
    yield json.loads((SAMPLE_CORPUS / "questions.json").read_text())
