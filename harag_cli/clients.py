"""The one place the `harag` commands make a client of the public API."""

from __future__ import annotations

import harag


def api_client(addr: str) -> harag.AsyncClient:
    """The client library every command that calls the public API goes through, so the CLI
    behaves as a user's program does. Credentials (an API key) will be added here."""
    return harag.AsyncClient(addr)
