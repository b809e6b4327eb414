"""The one place the `harag` commands make a client of the public API, and find its API key.

The key a command sends: `--api-key`, else $HARAG_API_KEY, else the development key that
`harag up` wrote for that gateway's address (see `dev_key_path`), else none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc

import harag

API_KEY_ENV = "HARAG_API_KEY"


def state_dir() -> Path:
    """Where `harag up` keeps what the CLI needs between runs: $XDG_STATE_HOME/harag
    (~/.local/state/harag by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harag"


def _file_name(gateway: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in gateway)


def dev_key_path(gateway: str) -> Path:
    """The file holding the development key `harag up` created for the gateway at `gateway`
    (one per address, so meshes started with different --port-offset keep their own)."""
    return state_dir() / "api-keys" / _file_name(gateway)


def up_key_file(gateway: str) -> Path:
    """The key file (hashed keys) `harag up` gives the gateway it starts at `gateway`."""
    return state_dir() / "gateway-keys" / f"{_file_name(gateway)}.json"


def resolve_api_key(gateway: str, flag: str | None = None) -> str | None:
    """The API key to send to `gateway`: the flag, $HARAG_API_KEY, `harag up`'s file, or None."""
    if flag:
        return flag
    env = os.environ.get(API_KEY_ENV)
    if env:
        return env
    try:
        return dev_key_path(gateway).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def key_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `api_key` (for the commands that call raw stubs)."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def api_client(addr: str, api_key: str | None = None) -> harag.AsyncClient:
    """The client library every command that calls the public API goes through, so the CLI
    behaves as a user's program does."""
    key = resolve_api_key(addr, api_key)
    if key is None:
        return harag.AsyncClient(addr)
    return harag.AsyncClient(addr, api_key=key)


class _SendKey(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds the API key to every call on a channel (for the commands that use raw stubs)."""

    def __init__(self, api_key: str) -> None:
        self._pairs = key_metadata(api_key)

    def _with_key(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._pairs)
        return details._replace(metadata=metadata)  # type: ignore[attr-defined,no-any-return]

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


def keyed_channel(addr: str, api_key: str | None) -> grpc.aio.Channel:
    """A plaintext channel whose every call carries `api_key` (none when None)."""
    interceptors = [_SendKey(api_key)] if api_key else None
    return grpc.aio.insecure_channel(addr, interceptors=interceptors)
