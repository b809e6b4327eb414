"""API keys: the token format, the key file, and checking a presented key against it.

A key is `hrg_<id>_<secret>`: the id is public (it names the key in the file, in logs and in
`harag keys list`), the secret is 256 random bits and is never stored. The key file keeps
only `sha256:<hex>` of the secret. A plain SHA-256 is enough here, and a slow password hash
(scrypt, argon2) would only cost: those exist to make guessing a *low-entropy* password
from its hash expensive, but guessing a 256-bit random secret is infeasible at any hash
speed, while every call pays the verification, so a deliberately slow hash would hand
anyone without a key a cheap way to burn the gateway's CPU.

The key file (JSON, documented in the README's Security section):

    {"tiers": {"standard": {"queries_per_second": 5, "query_burst": 10,
                            "documents_per_minute": 600}},
     "keys": [{"id": "3f9c2a7b1e04", "hash": "sha256:…", "client": "acme-web",
               "scopes": ["query"], "tier": "standard", "limits": {"query_burst": 20},
               "expires": "2026-12-31T00:00:00Z", "disabled": false,
               "created": "2025-01-01T00:00:00Z"}]}

A key's `limits` override its tier's field by field. Unknown fields are errors, so a typo
(`"scope"`) cannot silently grant or deny. Parse errors are one line naming the place
(`keys[2].scopes: ...`) and never quote a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, cast

from gateway.security.identity import ALL_SCOPES, ClientIdentity, RateLimits, Scope

TOKEN_PREFIX = "hrg_"
HASH_SCHEME = "sha256:"
KEY_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
"""Key ids: no underscore, so `hrg_<id>_<secret>` splits at the first one after the prefix."""
SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_CLIENT_CHARS = 128
LIMIT_FIELDS = ("queries_per_second", "query_burst", "documents_per_minute")
KEY_FIELDS = frozenset(
    {"id", "hash", "client", "scopes", "tier", "limits", "expires", "disabled", "created"}
)
# Compared against when the id is unknown, so an unknown id costs what a wrong secret does.
_DUMMY_DIGEST = hashlib.sha256(b"harag: no such key").digest()


class KeyFileError(ValueError):
    """The key file cannot be used. Its text is one line naming where it is wrong."""


@dataclass(frozen=True)
class Token:
    """A presented key, split into its public id and its secret."""

    key_id: str
    secret: str


def new_token() -> tuple[str, str, str]:
    """A fresh key: (id, secret, the token a client sends)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)  # 256 bits
    return key_id, secret, f"{TOKEN_PREFIX}{key_id}_{secret}"


def hash_secret(secret: str) -> str:
    """What the key file stores for a secret: `sha256:<hex>`."""
    return HASH_SCHEME + hashlib.sha256(secret.encode()).hexdigest()


def parse_token(text: str) -> Token | None:
    """The id and secret of `hrg_<id>_<secret>`, or None when it has not that form."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = text[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not KEY_ID.match(key_id) or not SECRET.match(secret):
        return None
    return Token(key_id, secret)


@dataclass(frozen=True)
class ApiKey:
    """One entry of the key file. Holds the secret's digest, never the secret."""

    key_id: str
    digest: bytes
    client: str
    scopes: frozenset[Scope]
    limits: RateLimits
    tier: str = ""
    expires_at: float | None = None
    """Unix time after which the key no longer authenticates."""
    disabled: bool = False

    def identity(self) -> ClientIdentity:
        return ClientIdentity(
            key_id=self.key_id, client=self.client, scopes=self.scopes, limits=self.limits
        )


class Verdict(Enum):
    ACCEPTED = "accepted"
    INVALID = "invalid"  # unknown id, wrong secret, malformed or revoked: one answer for all
    EXPIRED = "expired"  # the right secret of a key past its expiry


@dataclass(frozen=True)
class KeySet:
    """The keys of one version of the key file, by id."""

    keys: Mapping[str, ApiKey]
    tiers: Mapping[str, RateLimits]

    def verify(self, presented: str, now: float) -> tuple[Verdict, ApiKey | None]:
        """Checks a presented token in constant time with respect to its secret.

        An unknown id is compared against a dummy digest, so how long a check takes does
        not tell whether the id exists."""
        token = parse_token(presented)
        if token is None:
            return Verdict.INVALID, None
        key = self.keys.get(token.key_id)
        digest = hashlib.sha256(token.secret.encode()).digest()
        matches = hmac.compare_digest(digest, key.digest if key else _DUMMY_DIGEST)
        if key is None or not matches or key.disabled:
            return Verdict.INVALID, None
        if key.expires_at is not None and now >= key.expires_at:
            return Verdict.EXPIRED, key
        return Verdict.ACCEPTED, key


EMPTY = KeySet({}, {})


# -- parsing -----------------------------------------------------------------------------


def _positive(value: Any, where: str, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyFileError(f"{where}: must be a number")
    if integer and not float(value).is_integer():
        raise KeyFileError(f"{where}: must be a whole number")
    if not value > 0 or value != value or value == float("inf"):
        raise KeyFileError(f"{where}: must be above 0")
    return int(value) if integer else float(value)


NO_LIMITS = RateLimits()


def parse_limits(raw: Any, where: str, base: RateLimits = NO_LIMITS) -> RateLimits:
    """A `limits` object (or a tier) over `base`: each field given replaces base's."""
    if not isinstance(raw, dict):
        raise KeyFileError(f"{where}: must be an object with {', '.join(LIMIT_FIELDS)}")
    unknown = sorted(set(raw) - set(LIMIT_FIELDS))
    if unknown:
        raise KeyFileError(
            f"{where}: unknown field {unknown[0]!r}; known: {', '.join(LIMIT_FIELDS)}"
        )
    limits = base
    if "queries_per_second" in raw:
        qps = _positive(raw["queries_per_second"], f"{where}.queries_per_second", False)
        limits = replace(limits, queries_per_second=float(qps))
    if "query_burst" in raw:
        burst = _positive(raw["query_burst"], f"{where}.query_burst", True)
        limits = replace(limits, query_burst=int(burst))
    if "documents_per_minute" in raw:
        docs = _positive(raw["documents_per_minute"], f"{where}.documents_per_minute", False)
        limits = replace(limits, documents_per_minute=float(docs))
    return limits


def parse_time(raw: Any, where: str) -> float:
    """An ISO 8601 time with a zone (`2026-12-31T00:00:00Z`) as Unix time."""
    if not isinstance(raw, str):
        raise KeyFileError(f"{where}: must be an ISO 8601 time such as 2026-12-31T00:00:00Z")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise KeyFileError(
            f"{where}: {raw!r} is not an ISO 8601 time such as 2026-12-31T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise KeyFileError(f"{where}: {raw!r} needs a time zone, e.g. a trailing Z for UTC")
    return moment.timestamp()


def _scopes(raw: Any, where: str) -> frozenset[Scope]:
    known = ", ".join(sorted(ALL_SCOPES))
    if not isinstance(raw, list) or not raw:
        raise KeyFileError(f"{where}: must be a non-empty list of {known}")
    for scope in raw:
        if scope not in ALL_SCOPES:
            raise KeyFileError(f"{where}: unknown scope {scope!r}; one of {known}")
    return frozenset(cast(list[Scope], raw))


def _key(raw: Any, where: str, tiers: Mapping[str, RateLimits]) -> ApiKey:
    if not isinstance(raw, dict):
        raise KeyFileError(f"{where}: must be an object")
    unknown = sorted(set(raw) - KEY_FIELDS)
    if unknown:
        raise KeyFileError(
            f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(KEY_FIELDS))}"
        )
    key_id = raw.get("id")
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise KeyFileError(f"{where}.id: must be 1-64 letters, digits or '-'")
    digest = raw.get("hash")
    if not isinstance(digest, str) or not _HASH.match(digest):
        raise KeyFileError(f"{where}.hash: must be sha256:<64 lower-case hex digits>")
    client = raw.get("client")
    if (
        not isinstance(client, str)
        or not client.strip()
        or len(client) > MAX_CLIENT_CHARS
        or not client.isprintable()
    ):
        raise KeyFileError(f"{where}.client: must be 1-{MAX_CLIENT_CHARS} printable characters")
    tier = raw.get("tier", "")
    if not isinstance(tier, str) or (tier and tier not in tiers):
        names = ", ".join(sorted(tiers)) or "none defined"
        raise KeyFileError(f"{where}.tier: unknown tier {tier!r}; tiers: {names}")
    limits = tiers[tier] if tier else NO_LIMITS
    if "limits" in raw:
        limits = parse_limits(raw["limits"], f"{where}.limits", limits)
    disabled = raw.get("disabled", False)
    if not isinstance(disabled, bool):
        raise KeyFileError(f"{where}.disabled: must be true or false")
    if "created" in raw:
        parse_time(raw["created"], f"{where}.created")
    return ApiKey(
        key_id=key_id,
        digest=bytes.fromhex(digest.removeprefix(HASH_SCHEME)),
        client=client,
        scopes=_scopes(raw.get("scopes"), f"{where}.scopes"),
        limits=limits,
        tier=tier,
        expires_at=parse_time(raw["expires"], f"{where}.expires") if "expires" in raw else None,
        disabled=disabled,
    )


def parse_document(document: Any) -> KeySet:
    """The keys of a decoded key file; raises KeyFileError naming the first problem."""
    if not isinstance(document, dict):
        raise KeyFileError('must be a JSON object {"keys": [...], "tiers": {...}}')
    unknown = sorted(set(document) - {"keys", "tiers", "version"})
    if unknown:
        raise KeyFileError(f"unknown field {unknown[0]!r}; known: keys, tiers, version")
    if document.get("version", 1) != 1:
        raise KeyFileError("version: must be 1")
    raw_tiers = document.get("tiers", {})
    if not isinstance(raw_tiers, dict):
        raise KeyFileError("tiers: must be an object of tier name -> limits")
    tiers = {name: parse_limits(raw, f"tiers.{name}") for name, raw in raw_tiers.items()}
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise KeyFileError("keys: must be a list (it may be empty)")
    keys: dict[str, ApiKey] = {}
    for i, raw in enumerate(raw_keys):
        key = _key(raw, f"keys[{i}]", tiers)
        if key.key_id in keys:
            raise KeyFileError(f"keys[{i}].id: {key.key_id!r} repeats an earlier key's id")
        keys[key.key_id] = key
    return KeySet(keys, tiers)


def parse_key_file(text: str) -> KeySet:
    """The keys of a key file's text; raises KeyFileError (one line) when it is not valid."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_document(document)


def key_entry(
    key_id: str,
    secret: str,
    client: str,
    scopes: list[str],
    tier: str = "",
    created: str = "",
) -> dict[str, Any]:
    """A new key file entry (as JSON data) for a secret: what `harag keys create` appends."""
    entry: dict[str, Any] = {
        "id": key_id,
        "hash": hash_secret(secret),
        "client": client,
        "scopes": scopes,
    }
    if tier:
        entry["tier"] = tier
    if created:
        entry["created"] = created
    return entry
