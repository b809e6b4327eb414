"""Shared breaker decisions: counts stay local, decisions travel.

Each replica's breakers count their own calls (as Resilience4j, Envoy and LiteLLM do): a
replica never opens on numbers it did not see. When a breaker trips locally, the decision
is published: `breaker:open:<upstream>` holds it with the open wait as its TTL, and a
message on the shared event channel carries it at once. Another replica applies it with
`CircuitBreaker.open_remotely(wait)`: its breaker for the same upstream stops calling for
the rest of that wait, then probes by itself like after its own trip. So an idle replica
stops sending to a dead upstream without paying timeouts first.

How a remote OPEN is applied: per upstream *and target*. It is applied only when the
publishing replica's upstream of that name dials the same target (the same address or
Service name). Each replica balances its calls over every pod behind that target
(round_robin over a headless Service, see gateway/balancing.py), so a breaker measures the
whole upstream, not one pod that replica happened to be pinned to; a trip at one replica is
therefore evidence about the upstream every replica calls, and no quorum is needed. A single
bad pod is not a breaker's business: grpc's health checking and reconnect backoff take it
out of the rotation (see README, "Several gateway replicas"). A replica's own trips are
never re-published by the others (no echo), and a remote OPEN never raises the local trip
count (the next local open wait does not grow because of it).

Operator actions (GatewayAdminService.TransitionBreaker) apply to every replica:
force-open and disable are kept under `breaker:admin:<upstream>` until a reset deletes it.

When Redis is unavailable every replica's breakers work alone, exactly as without Redis.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from gateway.resilience.breaker import BreakerTransition
from gateway.resilience.breaker_types import CircuitState, TransitionReason
from gateway.shared.events import Message, SharedEvents
from gateway.upstreams import Upstream

log = logging.getLogger("harag.shared")

OPENED = "breaker_open"
ADMIN = "breaker_admin"
FORCE_OPEN = "force_open"
DISABLE = "disable"
RESET = "reset"
ADMIN_ACTIONS = (FORCE_OPEN, DISABLE, RESET)


class SharedBreakers:
    def __init__(self, events: SharedEvents, upstreams: Sequence[Upstream]) -> None:
        self.events = events
        self.link = events.link
        self._upstreams = {u.name: u for u in upstreams if u.guard.breaker is not None}
        # The operator action last seen under each admin key: a key that disappears while
        # this replica still holds that action was reset elsewhere.
        self._admin_seen: dict[str, str] = {}
        self.applied = 0  # remote decisions that changed a local breaker

    def start(self) -> None:
        """Hooks the breakers and the event channel (call before `events.start()`)."""
        if not self.link.configured:
            return
        for upstream in self._upstreams.values():
            breaker = upstream.guard.breaker
            assert breaker is not None
            breaker.add_listener(functools.partial(self._on_transition, upstream))
        self.events.on(OPENED, self._on_opened)
        self.events.on(ADMIN, self._on_admin)
        self.events.every_poll(self.poll)

    # -- publishing ---------------------------------------------------------------------

    def _open_key(self, name: str) -> str:
        return self.link.key("breaker", "open", name)

    def _admin_key(self, name: str) -> str:
        return self.link.key("breaker", "admin", name)

    def _on_transition(self, upstream: Upstream, event: BreakerTransition) -> None:
        if event.to_state is CircuitState.OPEN and event.reason is not TransitionReason.REMOTE_OPEN:
            wait_ms = max(1, int((event.open_wait_s or 0.0) * 1000))
            self.events.spawn("publish-open", lambda: self._publish_open(upstream, wait_ms))
        elif (
            event.to_state is CircuitState.CLOSED
            and event.reason is TransitionReason.HALF_OPEN_PROBES_PASSED
        ):
            # This replica saw the upstream answer again: no replica should learn of an
            # older OPEN from the key any more (those that applied it probe on their own).
            self.events.spawn("clear-open", lambda: self._clear_open(upstream.name))

    async def _publish_open(self, upstream: Upstream, wait_ms: int) -> None:
        decision = self.events.encode(
            OPENED, upstream=upstream.name, target=upstream.address, wait_ms=wait_ms
        )

        async def write(client: Redis) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(self._open_key(upstream.name), decision, px=wait_ms)
                pipe.publish(self.events.channel, decision)
                return await pipe.execute()

        await self.link.call(write)

    async def _clear_open(self, name: str) -> None:
        await self.link.call(lambda client: client.delete(self._open_key(name)))

    async def publish_admin(self, name: str, action: str) -> None:
        """An operator's action on this replica, for every other one (awaited by the admin
        RPC; raises RedisUnavailable when it could not be shared)."""
        message = self.events.encode(ADMIN, upstream=name, action=action)

        async def write(client: Redis) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                if action == RESET:
                    pipe.delete(self._admin_key(name), self._open_key(name))
                else:
                    pipe.set(self._admin_key(name), action)
                pipe.publish(self.events.channel, message)
                return await pipe.execute()

        await self.link.call(write)
        self._admin_seen[name] = "" if action == RESET else action

    # -- applying -------------------------------------------------------------------------

    def _on_opened(self, message: Message) -> None:
        self.apply_open(
            str(message["upstream"]), str(message["target"]), int(message["wait_ms"]) / 1000
        )

    def _on_admin(self, message: Message) -> None:
        name, action = str(message["upstream"]), str(message["action"])
        if name in self._upstreams and action in ADMIN_ACTIONS:
            self._admin_seen[name] = "" if action == RESET else action
            self.apply_admin(name, action)

    def apply_open(self, name: str, target: str, wait_s: float) -> bool:
        """Applies another replica's OPEN (see the module docstring); True if it changed
        the local breaker."""
        upstream = self._upstreams.get(name)
        if upstream is None or upstream.address != target:
            return False
        breaker = upstream.guard.breaker
        assert breaker is not None
        changed = breaker.open_remotely(wait_s)
        if changed:
            self.applied += 1
            log.info(
                "breaker opened by another replica",
                extra={"upstream": name, "open_wait_s": round(wait_s, 3)},
            )
        return changed

    def apply_admin(self, name: str, action: str) -> bool:
        upstream = self._upstreams.get(name)
        if upstream is None:
            return False
        breaker = upstream.guard.breaker
        assert breaker is not None
        wanted = {FORCE_OPEN: CircuitState.FORCED_OPEN, DISABLE: CircuitState.DISABLED}
        if action == RESET:
            if breaker.state not in (CircuitState.FORCED_OPEN, CircuitState.DISABLED):
                return False
            breaker.reset()
            if upstream.guard.recent is not None:
                upstream.guard.recent.reset()
        elif breaker.state is wanted[action]:
            return False
        elif action == FORCE_OPEN:
            breaker.force_open()
        else:
            breaker.disable()
        self.applied += 1
        log.info("breaker action by another replica", extra={"upstream": name, "action": action})
        return True

    # -- the backstop -----------------------------------------------------------------------

    async def poll(self) -> None:
        """Reads every upstream's shared decision keys in one round trip and applies them."""
        names = list(self._upstreams)

        async def read(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(self._open_key(name))
                    pipe.pttl(self._open_key(name))
                    pipe.get(self._admin_key(name))
                return list(await pipe.execute())

        replies = await self.link.call(read)
        for i, name in enumerate(names):
            opened, ttl_ms, admin = replies[3 * i : 3 * i + 3]
            self._poll_admin(name, admin)
            decision = _decode(opened)
            if decision is None or decision.get("replica") == self.events.replica:
                continue
            if isinstance(ttl_ms, int) and ttl_ms > 0:
                self.apply_open(name, str(decision.get("target")), ttl_ms / 1000)

    def _poll_admin(self, name: str, raw: object) -> None:
        action = raw.decode() if isinstance(raw, bytes) else ""
        if action in (FORCE_OPEN, DISABLE):
            self._admin_seen[name] = action
            self.apply_admin(name, action)
        elif self._admin_seen.get(name):
            # The key was there and is gone: an operator reset it at another replica.
            self._admin_seen[name] = ""
            self.apply_admin(name, RESET)


def _decode(raw: object) -> dict[str, Any] | None:
    """A decision under a key, or None for nothing or garbage (garbage is never a crash)."""
    if not isinstance(raw, bytes):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
