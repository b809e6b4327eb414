"""Where the CLI finds a local mesh, and which loopback ports are free."""

from __future__ import annotations

import os
import socket

import pytest

from harag_cli.localports import free_port, free_port_offset, listens_on, port_is_free, taken_ports
from harag_cli.meshctl import default_addresses, gateway_address
from harag_cli.traces import viewer_url


def test_a_listening_port_is_taken_and_its_owner_is_known():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        assert taken_ports({"gateway": port, "other": free_port()}) == {"gateway": port}
        assert listens_on(os.getpid(), port) in (True, None)  # None only without /proc
    assert port_is_free(port)


def test_the_offset_it_suggests_frees_every_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        base = taken - 100  # at offset 100 the first port would land on the taken one
        offset = free_port_offset([base, base + 1], start=100, step=100)
    assert offset is not None and offset >= 200
    assert all(port_is_free(p + offset) for p in (base, base + 1))


def test_commands_address_the_mesh_of_their_port_offset(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HARAG_GATEWAY", raising=False)
    monkeypatch.delenv("HARAG_TRACE_VIEWER", raising=False)
    assert gateway_address(None, None) == "127.0.0.1:50051"
    assert gateway_address(None, 100) == "127.0.0.1:50151"
    assert gateway_address("10.0.0.1:9", 100) == "10.0.0.1:9", "--addr wins"
    monkeypatch.setenv("HARAG_GATEWAY", "127.0.0.1:7000")
    assert gateway_address(None, None) == "127.0.0.1:7000"
    assert gateway_address(None, 100) == "127.0.0.1:50151", "an explicit offset wins"
    assert default_addresses(100)["retriever-fallback"] == "127.0.0.1:50172"
    assert viewer_url(None, 100) == "http://127.0.0.1:4420"
    assert viewer_url("http://viewer:1", 100) == "http://viewer:1"
