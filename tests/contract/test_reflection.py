"""Server reflection, checked through the reflection protocol itself.

This is what grpcurl and other dynamic clients rely on: every process lists its services,
and the file descriptors it returns are enough to build a QueryRequest and call Query with
no generated code at all (a fresh descriptor pool, message classes made at runtime).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
COMPONENT_SERVICES = {
    f"{component}-{tier}": f"harag.v1.{component.capitalize()}Service"
    for component in ("embedder", "retriever", "generator")
    for tier in ("primary", "fallback")
}
GATEWAY_SERVICE = "harag.v1.RagGatewayService"


async def reflect(
    address: str, requests: list[reflection_pb2.ServerReflectionRequest]
) -> list[reflection_pb2.ServerReflectionResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        return [reply async for reply in stub.ServerReflectionInfo(iter(requests), timeout=10)]


async def list_services(address: str) -> set[str]:
    (reply,) = await reflect(address, [reflection_pb2.ServerReflectionRequest(list_services="")])
    return {service.name for service in reply.list_services_response.service}


async def file_descriptors(address: str, symbol: str) -> dict[str, bytes]:
    """The file defining `symbol` and all its imports, by name, as serialized FileDescriptorProtos.

    The server may return imports along with the file; any it leaves out are asked for by name.
    """
    files: dict[str, bytes] = {}
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    while request is not None:
        (reply,) = await reflect(address, [request])
        assert not reply.HasField("error_response"), reply.error_response
        for serialized in reply.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            files[proto.name] = serialized
        missing = {
            dependency
            for serialized in files.values()
            for dependency in descriptor_pb2.FileDescriptorProto.FromString(serialized).dependency
            if dependency not in files
        }
        request = (
            reflection_pb2.ServerReflectionRequest(file_by_filename=min(missing))
            if missing
            else None
        )
    return files


def pool_of(files: dict[str, bytes]) -> descriptor_pool.DescriptorPool:
    """A fresh descriptor pool holding the files, each added after its imports."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        for dependency in descriptor_pb2.FileDescriptorProto.FromString(files[name]).dependency:
            add(dependency)
        pool.AddSerializedFile(files[name])
        added.add(name)

    for name in files:
        add(name)
    return pool


def expected_services(mesh: Any, process: str) -> tuple[str, set[str]]:
    if process == "gateway":
        return mesh.gateway_address, {GATEWAY_SERVICE, HEALTH, REFLECTION}
    return mesh.address(process), {COMPONENT_SERVICES[process], HEALTH, REFLECTION}


@pytest.mark.parametrize("process", ["gateway", *COMPONENT_SERVICES])
async def test_every_process_lists_its_services(mesh: Any, process: str) -> None:
    address, expected = expected_services(mesh, process)

    services = await list_services(address)

    assert expected <= services, f"{process} lists {sorted(services)}"
    if process != "gateway":
        # The test mesh runs with fault injection enabled; reflection must show that too.
        assert "harag.v1.FaultInjectionService" in services


@pytest.mark.parametrize("process", ["gateway", *COMPONENT_SERVICES])
async def test_every_listed_service_has_a_complete_descriptor(mesh: Any, process: str) -> None:
    address, _ = expected_services(mesh, process)

    for service in await list_services(address):
        pool = pool_of(await file_descriptors(address, service))
        assert pool.FindServiceByName(service).methods, service


async def test_a_dynamic_client_calls_query_from_reflected_descriptors(
    mesh: Any, known_question: dict[str, str]
) -> None:
    pool = pool_of(await file_descriptors(mesh.gateway_address, GATEWAY_SERVICE))
    method = pool.FindServiceByName(GATEWAY_SERVICE).methods_by_name["Query"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    # Built from what the server sent, not from the generated harag.v1 modules.
    assert request_class.DESCRIPTOR.file.pool is pool

    request = request_class(query=known_question["question"], top_k=3)
    async with grpc.aio.insecure_channel(mesh.gateway_address) as channel:
        query = channel.unary_unary(
            f"/{GATEWAY_SERVICE}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        reply = await query(request, timeout=10)

    assert reply.answer.strip()
    assert 1 <= len(reply.sources) <= 3
    assert reply.sources[0].id == known_question["expected"]
