"""The replicas' shared event channel: one Redis pub/sub channel for every shared decision
(a breaker opened, an operator's breaker action, documents evicted from the answer cache),
plus one poll loop that reads the same decisions from their keys.

Pub/sub is the fast path (a message arrives within milliseconds) but it is fire-and-forget:
a replica whose subscription connection dropped misses what was published meanwhile. Every
decision is therefore also written under a key, and each feature's `poll` reads those keys
every `shared_poll_interval_s`: the backstop that bounds how late a replica can learn of a
decision. Messages are JSON objects {"kind", "replica", ...}; a replica ignores its own and
anything it cannot parse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from gateway.shared.redis_link import RedisLink, RedisUnavailable
from servicekit.background import BackgroundTasks

log = logging.getLogger("harag.shared")

Message = dict[str, Any]
Handler = Callable[[Message], None]
Poll = Callable[[], Awaitable[None]]

RECONNECT_BACKOFF_S = (0.05, 1.0)  # first and longest wait between subscription attempts


def new_replica_id() -> str:
    """Tells this process's messages and keys from the other replicas' (pid for people)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SharedEvents:
    def __init__(self, link: RedisLink, poll_interval_s: float, replica: str = "") -> None:
        self.link = link
        self.replica = replica or new_replica_id()
        self.channel = link.key("events")
        self.poll_interval_s = poll_interval_s
        self._handlers: dict[str, Handler] = {}
        self._polls: list[Poll] = []
        self._tasks = BackgroundTasks("shared events")
        self.subscribed = asyncio.Event()
        self.received = 0  # messages handled (not counting this replica's own)

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def every_poll(self, poll: Poll) -> None:
        self._polls.append(poll)

    def encode(self, kind: str, **fields: Any) -> str:
        return json.dumps({**fields, "kind": kind, "replica": self.replica})

    def spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Runs `work` in the background (publishing must never delay the caller)."""

        async def run() -> None:
            try:
                await work()
            except RedisUnavailable:
                pass  # the poll of the other replicas, or their own breakers, cover this

        self._tasks.start(f"{name}-{uuid.uuid4().hex[:6]}", run)

    def start(self) -> None:
        if not self.link.configured:
            return
        self._tasks.start("subscribe", self._subscribe)
        self._tasks.start("poll", self._poll)

    async def stop(self) -> None:
        await self._tasks.stop()

    def dispatch(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("replica") == self.replica:
            return
        handler = self._handlers.get(str(message.get("kind")))
        if handler is None:
            return
        self.received += 1
        try:
            handler(message)
        except (KeyError, TypeError, ValueError):
            log.warning("malformed shared event ignored", extra={"kind": message.get("kind")})

    async def _subscribe(self) -> None:
        backoff = RECONNECT_BACKOFF_S[0]
        while True:
            pubsub = self.link.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                backoff = RECONNECT_BACKOFF_S[0]
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.dispatch(message["data"])
            except (RedisError, OSError) as exc:
                log.info("shared events: subscription lost", extra={"error": str(exc)})
            finally:
                self.subscribed.clear()
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_BACKOFF_S[1])

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            for poll in self._polls:
                try:
                    await poll()
                except RedisUnavailable:
                    break  # Redis is down or its breaker is open: try again next interval
