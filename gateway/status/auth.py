"""Who may read the status page's data and act on breakers: callers with the `admin` scope.

The HTTP side of the API-key check. A `TokenValidator` turns the bearer token of an
`Authorization: Bearer <key>` header into the caller's identity (None: not a valid key);
the gateway's key store plugs in here. Without a validator (authentication off) every
caller is ANONYMOUS, which holds every scope: the page is open, like the gRPC API is, and
only as reachable as the HTTP port's listen address (loopback by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.security.identity import ANONYMOUS, ClientIdentity, Scope

TokenValidator = Callable[[str], ClientIdentity | None]
REQUIRED_SCOPE: Scope = "admin"
BEARER = "bearer "


@dataclass(frozen=True)
class Denied:
    """Why a request is refused: HTTP status, a stable reason (as in gRPC's ErrorInfo)."""

    status: int
    reason: str
    message: str


def authorize(
    authorization: str | None, validator: TokenValidator | None
) -> ClientIdentity | Denied:
    """The caller's identity if it may use the page's data and actions, else why not."""
    if validator is None:
        return ANONYMOUS
    if not authorization or not authorization.lower().startswith(BEARER):
        return Denied(401, "API_KEY_MISSING", "send Authorization: Bearer <API key>")
    token = authorization[len(BEARER) :].strip()
    identity = validator(token) if token else None
    if identity is None:
        return Denied(401, "API_KEY_INVALID", "the API key is not valid")
    if not identity.allows(REQUIRED_SCOPE):
        return Denied(
            403, "SCOPE_MISSING", f"the key of {identity.client} lacks the {REQUIRED_SCOPE} scope"
        )
    return identity
