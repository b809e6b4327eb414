"""Talking to a running local mesh: where its processes are, their faults, the gateway's breakers.

One implementation for the CLI (`harag faults`), the demo, the tests and the benchmarks. A
component's address comes from the gateway (its upstream list), so any ports work; the
default ports plus an offset are the answer when no gateway is there to ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence

import grpc

import harag
from harag.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    fault_injection_pb2,
    fault_injection_pb2_grpc,
    gateway_pb2,
)
from servicekit.ports import GATEWAY_ADMIN_PORT, GATEWAY_PORT, process_ports

RPC_TIMEOUT_S = 5.0


def gateway_address(addr: str | None = None, port_offset: int | None = None) -> str:
    """The gateway to talk to: `--addr`, else `--port-offset`, else $HARAG_GATEWAY, else the
    default port."""
    if addr:
        return addr
    if port_offset is None:
        env = os.environ.get("HARAG_GATEWAY")
        if env:
            return env
        port_offset = 0
    return f"127.0.0.1:{GATEWAY_PORT + port_offset}"


def admin_address(gateway: str, addr: str | None = None) -> str:
    """The gateway's admin listener: `--admin-addr`, else $HARAG_ADMIN_ADDR, else the
    gateway's host at its port + 1 (the gateway's own default for `admin_port`)."""
    if addr:
        return addr
    env = os.environ.get("HARAG_ADMIN_ADDR")
    if env:
        return env
    host, _, port = gateway.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"gateway address {gateway!r} is not host:port")
    return f"{host}:{int(port) + GATEWAY_ADMIN_PORT - GATEWAY_PORT}"


def default_addresses(port_offset: int = 0) -> dict[str, str]:
    """Every process of a mesh started by `harag up --port-offset port_offset`."""
    return {name: f"127.0.0.1:{port}" for name, port in process_ports(port_offset).items()}


async def discover(gateway: str, api_key: str | None = None) -> dict[str, str]:
    """Component name -> address, as the gateway at `gateway` reaches them.

    Raises harag.HaragError when the gateway does not answer."""
    async with harag.AsyncClient(gateway, timeout=RPC_TIMEOUT_S, api_key=api_key) as client:
        reply = await client.get_system_health()
    return {u.name: u.address for u in reply.upstreams}


def state_name(state: int) -> str:
    """A breaker state as the CLI, the demo and the tests name it: CLOSED, OPEN, ..."""
    return gateway_pb2.CircuitState.Name(state).removeprefix("CIRCUIT_STATE_")


async def list_breakers(
    channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = ()
) -> Sequence[admin_pb2.UpstreamBreaker]:
    """Every upstream breaker of the gateway whose admin listener is at the other end of
    `channel`; `metadata` carries an admin key when the gateway requires one."""
    reply = await admin_pb2_grpc.GatewayAdminServiceStub(channel).ListBreakers(
        admin_pb2.ListBreakersRequest(), timeout=RPC_TIMEOUT_S, metadata=tuple(metadata)
    )
    return list(reply.breakers)


def states_of(breakers: Iterable[admin_pb2.UpstreamBreaker]) -> dict[str, str]:
    """Breaker state name per upstream."""
    return {b.upstream: state_name(b.breaker.state) for b in breakers}


class MeshControl:
    """Fault injection and breaker control over a mesh whose addresses are known.

    By default every call opens its own channel, so a restarted process is reached at once; a
    load generator that calls often keeps one channel per address (`keep_channels`), closed by
    `close()`. Breaker calls go to the gateway's admin listener (`admin`, by default the
    gateway's port + 1), with `api_key` when the gateway requires one.
    """

    def __init__(
        self,
        addresses: Mapping[str, str],
        gateway: str,
        keep_channels: bool = False,
        component_channel: Callable[[str], grpc.aio.Channel] | None = None,
        *,
        admin: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.addresses = dict(addresses)
        self.gateway = gateway
        self.admin = admin or admin_address(gateway)
        self.keep_channels = keep_channels
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        # Components of a mesh with mTLS need a client certificate (harag_cli.certs).
        self.component_channel = component_channel or grpc.aio.insecure_channel
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _new_channel(self, address: str) -> grpc.aio.Channel:
        if address == self.gateway:
            return grpc.aio.insecure_channel(address)
        return self.component_channel(address)

    def channel(self, address: str) -> grpc.aio.Channel:
        """The kept channel to `address` (opened on first use)."""
        if address not in self._channels:
            self._channels[address] = self._new_channel(address)
        return self._channels[address]

    @contextlib.asynccontextmanager
    async def _open(self, address: str) -> AsyncIterator[grpc.aio.Channel]:
        if self.keep_channels:
            yield self.channel(address)
        else:
            async with self._new_channel(address) as channel:
                yield channel

    def components(self) -> list[str]:
        return [name for name, address in self.addresses.items() if address != self.gateway]

    async def set_fault(self, name: str, fault: fault_injection_pb2.Fault) -> None:
        async with self._open(self.addresses[name]) as channel:
            await fault_injection_pb2_grpc.FaultInjectionServiceStub(channel).SetFault(
                fault_injection_pb2.SetFaultRequest(fault=fault), timeout=RPC_TIMEOUT_S
            )

    async def _clear(self, name: str) -> None:
        async with self._open(self.addresses[name]) as channel:
            await fault_injection_pb2_grpc.FaultInjectionServiceStub(channel).ClearFaults(
                fault_injection_pb2.ClearFaultsRequest(), timeout=RPC_TIMEOUT_S
            )

    async def clear_faults(self, names: Iterable[str] = ()) -> None:
        """Clears the faults of `names` (every component when empty)."""
        await asyncio.gather(*(self._clear(name) for name in (list(names) or self.components())))

    async def get_faults(self, name: str) -> fault_injection_pb2.GetFaultsResponse:
        async with self._open(self.addresses[name]) as channel:
            reply: fault_injection_pb2.GetFaultsResponse = await (
                fault_injection_pb2_grpc.FaultInjectionServiceStub(channel).GetFaults(
                    fault_injection_pb2.GetFaultsRequest(), timeout=RPC_TIMEOUT_S
                )
            )
            return reply

    async def transition_breaker(self, upstream: str, action: admin_pb2.BreakerAction) -> None:
        """An operator's breaker action (force open, disable, reset) on the gateway."""
        async with self._open(self.admin) as channel:
            await admin_pb2_grpc.GatewayAdminServiceStub(channel).TransitionBreaker(
                admin_pb2.TransitionBreakerRequest(upstream=upstream, action=action),
                timeout=RPC_TIMEOUT_S,
                metadata=self.metadata,
            )

    async def reset_breakers(self, names: Iterable[str] = ()) -> None:
        for name in list(names) or self.components():
            await self.transition_breaker(name, admin_pb2.BREAKER_ACTION_RESET)

    async def list_breakers(self, admin: str | None = None) -> Sequence[admin_pb2.UpstreamBreaker]:
        """The breakers of this mesh's gateway, or of the gateway whose admin listener is at
        `admin`."""
        async with self._open(admin or self.admin) as channel:
            return await list_breakers(channel, self.metadata)

    async def breaker_states(self, admin: str | None = None) -> dict[str, str]:
        """Breaker state name (CLOSED, OPEN, ...) per upstream of a gateway (its admin
        listener's address; this mesh's gateway by default)."""
        return states_of(await self.list_breakers(admin))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
