"""mTLS inside the mesh, with real processes: who a component lets in, and a CA rotation
under load that fails no query."""

from __future__ import annotations

import asyncio
import datetime
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from processes import LogBook
from waiting import wait_until

from harag.v1 import embedder_pb2, embedder_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from harag_cli.certs import (
    CA_FILE,
    Authority,
    create_mesh_certificates,
    identity_of,
    issue,
    mesh_names,
    new_authority,
    tls_env,
    write_private,
)
from harag_cli.corpus import sample_corpus
from harag_cli.localports import free_port
from harag_cli.supervisor import ProcessSpec, Supervisor, mesh_specs
from servicekit.ports import COMPONENT_NAMES

RELOAD_S = "0.1"


def credentials(ca: bytes, cert: bytes, key: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


async def embed(address: str, creds: grpc.ChannelCredentials | None) -> embedder_pb2.EmbedResponse:
    channel = (
        grpc.aio.secure_channel(address, creds) if creds else grpc.aio.insecure_channel(address)
    )
    async with channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        return await stub.Embed(embedder_pb2.EmbedRequest(texts=["hello"]), timeout=5)


class Component:
    def __init__(self, certs: Path, authority: Authority, spec: ProcessSpec, logs: LogBook):
        self.certs, self.authority, self.spec, self.logs = certs, authority, spec, logs
        self.ca = (certs / CA_FILE).read_bytes()

    def own(self, name: str) -> grpc.ChannelCredentials:
        return credentials(
            self.ca,
            (self.certs / f"{name}.crt").read_bytes(),
            (self.certs / f"{name}.key").read_bytes(),
        )

    def logged(self, msg: str) -> int:
        return sum(1 for line in self.logs.json_of(self.spec.name) if line.get("msg") == msg)


@pytest.fixture
async def component(tmp_path: Path) -> AsyncIterator[Component]:
    """embedder-fallback with mTLS on a free port, health on a plaintext port of its own."""
    certs = tmp_path / "certs"
    authority = create_mesh_certificates(certs)
    port, health_port = free_port(), free_port()
    env = {
        **tls_env(certs, "embedder-fallback"),
        "HARAG_PORT": str(port),
        "HARAG_HEALTH_PORT": str(health_port),
        "HARAG_TLS_RELOAD_INTERVAL_S": RELOAD_S,
        "HARAG_METRICS_PORT": "0",
    }
    argv = [sys.executable, "-m", "embedder_svc", "--impl", "fallback"]
    spec = ProcessSpec("embedder-fallback", argv, port, env, health_port)
    logs = LogBook()
    supervisor = Supervisor([spec], sink=logs, restart=False)
    await supervisor.start()
    try:
        await supervisor.wait_serving(timeout_s=30)
        yield Component(certs, authority, spec, logs)
    finally:
        codes = await supervisor.stop()
    assert codes == {"embedder-fallback": 0}


async def test_gateway_identity_is_served(component: Component) -> None:
    reply = await embed(component.spec.address, component.own("gateway"))
    assert len(reply.embeddings) == 1 and reply.embeddings[0].values


async def test_plaintext_call_is_refused(component: Component) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await embed(component.spec.address, None)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_no_client_certificate_is_refused(component: Component) -> None:
    server_only = grpc.ssl_channel_credentials(root_certificates=component.ca)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await embed(component.spec.address, server_only)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_certificate_from_another_ca_is_refused(component: Component) -> None:
    stranger = new_authority("someone else's CA")
    cert, key = issue(stranger, [identity_of("gateway")])  # the right name, the wrong CA
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await embed(component.spec.address, credentials(component.ca, cert, key))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_expired_client_certificate_is_refused(component: Component) -> None:
    # Signed by the mesh CA, with the gateway's identity, but past its end.
    now = datetime.datetime.now(datetime.UTC)
    cert, key = issue(
        component.authority,
        [identity_of("gateway")],
        not_before=now - datetime.timedelta(days=2),
        not_after=now - datetime.timedelta(days=1),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await embed(component.spec.address, credentials(component.ca, cert, key))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_valid_certificate_of_another_identity_is_permission_denied(
    component: Component,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await embed(component.spec.address, component.own("retriever-primary"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "retriever-primary.harag.internal" in (denied.value.details() or "")
    status = rpc_status.from_call(denied.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    assert info.reason == "PEER_NOT_ALLOWED"


async def test_half_written_certificate_keeps_the_old_one(component: Component) -> None:
    name = "embedder-fallback"
    whole = (component.certs / f"{name}.crt").read_bytes()
    # A writer that has written half the file (no rename): the component must not take it.
    (component.certs / f"{name}.crt").write_bytes(whole[: len(whole) // 2])
    await wait_until(
        lambda: any(
            line.get("msg", "").startswith("TLS files rejected")
            for line in component.logs.json_of(name)
        ),
        what="the component rejects the half-written certificate",
    )
    # New connections still get the old certificate and work.
    reply = await embed(component.spec.address, component.own("gateway"))
    assert reply.embeddings
    assert component.logged("TLS certificate reloaded") == 0


# -- rotating every certificate to a new CA under load ------------------------------------


class QueryLoop:
    """Asks the gateway one question after another until stopped; keeps every outcome."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answered = 0
        self.failures: list[str] = []
        self.unavailable_attempts: list[str] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = gateway_pb2_grpc.RagGatewayServiceStub(channel)
            while not self._stop.is_set():
                try:
                    reply = await stub.Query(
                        gateway_pb2.QueryRequest(query="How does a circuit breaker open?"),
                        timeout=10,
                    )
                except grpc.aio.AioRpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                self.answered += 1
                # A failed TLS handshake with an upstream shows as an UNAVAILABLE attempt
                # even when a fallback tier then answers.
                self.unavailable_attempts += [
                    f"{a.upstream}: {a.error}"
                    for stage in reply.stages
                    for a in stage.attempts
                    if a.outcome == "UNAVAILABLE"
                ]

    def stop(self) -> None:
        self._stop.set()


def reloads(logs: LogBook, name: str) -> int:
    return sum(1 for line in logs.json_of(name) if line.get("msg") == "TLS certificate reloaded")


async def test_rotation_to_a_second_ca_fails_no_query(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    create_mesh_certificates(certs)
    old_ca = (certs / CA_FILE).read_bytes()
    old_gateway = ((certs / "gateway.crt").read_bytes(), (certs / "gateway.key").read_bytes())
    names = ["gateway", *COMPONENT_NAMES]
    ports = {name: free_port() for name in names}
    health_ports = {name: free_port() for name in names}
    env = {
        "HARAG_TLS_RELOAD_INTERVAL_S": RELOAD_S,
        "HARAG_CACHE_TTL_S": "0",
        "HARAG_STALE_TTL_S": "0",
        "HARAG_COALESCE_ENABLED": "false",
        "HARAG_HEDGE_ENABLED": "false",
    }
    specs = mesh_specs(
        ports=ports,
        data_dir=tmp_path / "data",
        env=env,
        certs_dir=certs,
        health_ports=health_ports,
    )
    logs = LogBook()
    supervisor = Supervisor(specs, sink=logs)
    await supervisor.start()
    loop: QueryLoop | None = None
    running: asyncio.Task[None] | None = None
    try:
        await supervisor.wait_serving(timeout_s=60)
        gateway = supervisor.specs["gateway"].address
        async with grpc.aio.insecure_channel(gateway) as channel:
            reply = await gateway_pb2_grpc.RagGatewayServiceStub(channel).Ingest(
                gateway_pb2.IngestRequest(documents=sample_corpus()[:8]), timeout=60
            )
        assert all(r.status == gateway_pb2.INGEST_STATUS_ACCEPTED for r in reply.results)
        loop = QueryLoop(gateway)
        running = asyncio.create_task(loop.run())
        await wait_until(lambda: loop.answered >= 5, what="queries flow before the rotation")

        async def all_reloaded(times: int, what: str) -> None:
            await wait_until(
                lambda: all(reloads(logs, n) >= times for n in names), what=what, timeout_s=20
            )

        # 1. Everyone trusts both CAs.
        new_ca = new_authority("ha-rag mesh CA 2")
        write_private(certs / CA_FILE, old_ca + new_ca.pem())
        await all_reloaded(1, "every process trusts both CAs")
        # 2. Everyone gets a certificate from the new CA (certificate, then key: in between
        #    the pair does not match, and the old one must stay in force).
        for name in mesh_names():
            cert, key = issue(new_ca, [identity_of(name), name])
            write_private(certs / f"{name}.crt", cert)
            write_private(certs / f"{name}.key", key)
        await all_reloaded(2, "every process presents its new certificate")
        # 3. The old CA is trusted no more.
        write_private(certs / CA_FILE, new_ca.pem())
        await all_reloaded(3, "every process trusts only the new CA")
        # The gateway has closed every channel it made with an old certificate.
        await wait_until(
            lambda: (
                sum(
                    1
                    for line in logs.json_of("gateway")
                    if line.get("msg") == "replaced upstream channels closed"
                )
                >= 3
            ),
            what="the gateway closes its replaced channels",
            timeout_s=30,
        )
        answered = loop.answered
        await wait_until(
            lambda: loop.answered >= answered + 5, what="queries flow on the new channels"
        )
        loop.stop()
        await running

        assert loop.failures == []
        assert loop.unavailable_attempts == []
        # The components now refuse the old CA's gateway certificate, take the new one.
        component = supervisor.specs["embedder-primary"].address
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await embed(component, credentials(new_ca.pem(), *old_gateway))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        new_gateway = credentials(
            new_ca.pem(), (certs / "gateway.crt").read_bytes(), (certs / "gateway.key").read_bytes()
        )
        assert (await embed(component, new_gateway)).embeddings
    finally:
        if loop is not None and running is not None:
            loop.stop()
            await asyncio.gather(running, return_exceptions=True)
        codes = await supervisor.stop()
    assert all(code == 0 for code in codes.values()), codes
