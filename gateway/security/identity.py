"""Who is calling: the identity an authenticated call carries through the gateway.

The authentication interceptor resolves the caller's API key to a `ClientIdentity` and
sets it for the duration of the call (inside the wrapped handler behaviour, so the
handler's task sees it); the rate limiter, the request log line and the request span read
it with `current_client()`. With authentication turned off every call is `ANONYMOUS`.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["query", "ingest", "admin"]
ALL_SCOPES: frozenset[Scope] = frozenset({"query", "ingest", "admin"})


@dataclass(frozen=True)
class RateLimits:
    """Per-client limits a key carries (from the key itself or its tier); None means the
    gateway's configured default applies."""

    queries_per_second: float | None = None
    """Sustained Query/StreamQuery rate, per second."""
    query_burst: int | None = None
    """Queries allowed at once above the sustained rate."""
    documents_per_minute: float | None = None
    """Documents (Ingest and DeleteDocuments) per minute."""


@dataclass(frozen=True)
class ClientIdentity:
    """An authenticated caller. Never holds the secret or its hash."""

    key_id: str
    """The key's public id ("" for anonymous)."""
    client: str
    """The client's name: on the request's span and log line, and the rate-limit subject."""
    scopes: frozenset[Scope] = ALL_SCOPES
    """What the key may call: query, ingest, admin."""
    limits: RateLimits = field(default_factory=RateLimits)
    """The key's own rate limits."""

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


ANONYMOUS = ClientIdentity(key_id="", client="anonymous")
"""The caller when authentication is off: every scope, the default limits."""

_current: ContextVar[ClientIdentity] = ContextVar("harag_client_identity", default=ANONYMOUS)


def current_client() -> ClientIdentity:
    """The identity of the call being handled (ANONYMOUS outside a call or with auth off)."""
    return _current.get()


def set_current_client(identity: ClientIdentity) -> Token[ClientIdentity]:
    """Sets the caller for the rest of this call; reset with `reset_current_client`."""
    return _current.set(identity)


def reset_current_client(token: Token[ClientIdentity]) -> None:
    _current.reset(token)
