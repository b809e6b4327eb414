"""A tiny grpc.health.v1 probe: exit 0 when the server reports SERVING, 1 otherwise.

Container images have no curl for gRPC, so their HEALTHCHECK runs
`python -m servicekit.healthcheck`. Without --addr it probes 127.0.0.1:$HARAG_PORT, the port
the server in the same container listens on, so one image serves either implementation;
with TLS on that port, the server's plaintext $HARAG_HEALTH_PORT instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servicekit.ports import GATEWAY_PORT


def check(address: str, service: str = "", timeout_s: float = 2.0) -> str:
    """Returns the serving status name, or UNREACHABLE."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def check_async(address: str, service: str = "", timeout_s: float = 1.0) -> str:
    """`check` for asyncio callers."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def default_address(env: Mapping[str, str] = os.environ) -> str:
    """127.0.0.1:$HARAG_HEALTH_PORT (the plaintext health port a server with TLS keeps),
    else 127.0.0.1:$HARAG_PORT when it names a port, else the gateway's 127.0.0.1:50051."""
    health = env.get("HARAG_HEALTH_PORT", "").strip()
    if health.isdigit() and int(health) > 0:
        return f"127.0.0.1:{health}"
    port = env.get("HARAG_PORT", "").strip()
    return f"127.0.0.1:{port}" if port.isdigit() and int(port) > 0 else f"127.0.0.1:{GATEWAY_PORT}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servicekit.healthcheck", description=__doc__)
    parser.add_argument(
        "--addr", default=default_address(), help="host:port (default 127.0.0.1:$HARAG_PORT)"
    )
    parser.add_argument("--service", default="", help="service name; empty = whole server")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    args = parser.parse_args(argv)
    status = check(args.addr, args.service, args.timeout)
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
