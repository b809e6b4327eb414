"""Fixtures of the unit tests: the `harag` CLI run in-process against a scripted fake gateway."""

from __future__ import annotations

import pytest
from client_fakes import FakeAioChannel

import harag
from harag_cli import main as cli


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeAioChannel:
    """The channel every client the CLI makes talks to; tests script its answers."""
    channel = FakeAioChannel()
    monkeypatch.setattr(
        cli, "api_client", lambda addr, api_key=None: harag.AsyncClient(channel=channel)
    )
    return channel
