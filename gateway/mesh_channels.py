"""The gateway's channels to its upstreams, with its mesh certificate, renewed on rotation.

grpcio has no client-side counterpart of the server's certificate fetcher: a channel's
credentials are fixed when it is made. So when the gateway's certificate files change, it
makes a new channel for every upstream and swaps it in (each call reads `upstream.stub`
when it starts, so new calls take the new channel at once); the old channel is closed with
a grace longer than any attempt may take, so calls in flight on it finish normally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from gateway.balancing import channel_options, channel_target
from servicekit.tls import KeyMaterial, KeyMaterialWatcher, channel_credentials

log = logging.getLogger("harag.mesh_channels")

ChannelOptions = Sequence[tuple[str, Any]]


class ChannelFactory:
    """Opens a channel to an address: plaintext, or TLS with the current key material."""

    def __init__(
        self,
        options: ChannelOptions,
        watcher: KeyMaterialWatcher | None = None,
        server_name: str = "",
    ) -> None:
        self.options = list(options)
        self.watcher = watcher
        if server_name:
            self.options.append(("grpc.ssl_target_name_override", server_name))
        self._credentials: tuple[str, grpc.ChannelCredentials] | None = None

    def open(self, address: str) -> grpc.aio.Channel:
        """A channel to `address`: one endpoint, or several balanced round robin
        (gateway.balancing: `dns:///name:port` or `ip:port|ip:port`)."""
        target = channel_target(address)
        options = self.options + channel_options(address)
        if self.watcher is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._current(self.watcher.current), options)

    def _current(self, material: KeyMaterial) -> grpc.ChannelCredentials:
        if self._credentials is None or self._credentials[0] != material.fingerprint:
            self._credentials = (material.fingerprint, channel_credentials(material))
        return self._credentials[1]


class ChannelRenewal:
    """Watches the gateway's TLS files; on a change calls `renew` (which swaps channels in
    and returns the old ones) and closes the old channels after `close_grace_s`."""

    def __init__(
        self,
        watcher: KeyMaterialWatcher,
        renew: Callable[[], list[grpc.aio.Channel]],
        close_grace_s: float,
    ) -> None:
        self.watcher = watcher
        self.renew = renew
        self.close_grace_s = close_grace_s
        self._closing: dict[asyncio.Task[None], list[grpc.aio.Channel]] = {}
        self._seen = watcher.version

    async def run(self) -> None:
        """Polls the files until cancelled, renewing the channels after each change."""
        while True:
            await asyncio.sleep(self.watcher.files.reload_interval_s)
            await asyncio.to_thread(self.watcher.poll)
            self.renew_if_changed()

    def renew_if_changed(self) -> bool:
        version = self.watcher.version
        if version == self._seen:
            return False
        self._seen = version
        old = self.renew()
        log.info(
            "upstream channels renewed with the new certificate",
            extra={"channels": len(old), "old_closed_after_s": self.close_grace_s},
        )
        task = asyncio.create_task(self._close(old, self.close_grace_s))
        self._closing[task] = old
        task.add_done_callback(self._closing.pop)
        return True

    @staticmethod
    async def _close(channels: list[grpc.aio.Channel], grace_s: float | None) -> None:
        await asyncio.gather(*(c.close(grace_s) for c in channels))
        log.info("replaced upstream channels closed", extra={"channels": len(channels)})

    async def close_now(self) -> None:
        """At shutdown: the old channels still open are closed at once (the server has
        already given its calls their grace)."""
        pending = [c for channels in self._closing.values() for c in channels]
        for task in list(self._closing):
            task.cancel()
        await self._close(pending, None)
