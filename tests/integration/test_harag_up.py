"""`harag up` (what `make run` runs) as a user runs it: start, query, Ctrl-C, clean exit; a
second mesh beside the first; a port already taken; a component that cannot start."""

from __future__ import annotations

import json
import re
import socket
import time

from processes import HaragUp, run_harag

from harag_cli.localports import free_port_offset, port_is_free
from servicekit.ports import process_ports

DEFAULT_PORTS = list(process_ports().values())


def free_offset(after: int = 1000) -> int:
    """A port offset under which all seven default ports are free."""
    offset = free_port_offset(DEFAULT_PORTS, start=after, step=97)
    assert offset is not None, "no free port range"
    return offset


def gateway_of(offset: int) -> str:
    return f"127.0.0.1:{process_ports(offset)['gateway']}"


async def test_harag_up_serves_ingests_answers_and_stops_cleanly(tmp_path):
    offset = free_offset()
    async with HaragUp(offset, tmp_path / "data") as up:
        ingested = "ingested the sample corpus (44 documents, 0 failed)"
        assert any(ingested in line for line in up.lines)
        banner = "\n".join(up.lines[-12:])
        assert f"gateway on {gateway_of(offset)}" in banner
        assert f"harag health --port-offset {offset}" in banner
        assert f"--addr {gateway_of(offset)}" in banner
        code, out, err = await run_harag(
            "query",
            "What do the k1 and b parameters control in BM25?",
            "--addr",
            gateway_of(offset),
            "--json",
        )
        assert code == 0, err
        reply = json.loads(out)
        assert reply["sources"][0]["id"] == "04-bm25-ranking-function"
        code, out, _ = await run_harag("health", "--port-offset", str(offset))
        assert code == 0 and "system: HEALTHY" in out
        code, out, _ = await run_harag("breakers", "--addr", gateway_of(offset))
        assert code == 0 and out.count("CLOSED") == 6
    assert up.returncode == 0, up.rest[-2000:]
    assert "stopped (gateway=0" in up.rest and all(
        f"{name}=0" in up.rest for name in ("embedder-primary", "retriever-fallback")
    ), up.rest[-2000:]


async def test_a_second_mesh_runs_beside_the_first_and_each_cli_call_reaches_its_own(tmp_path):
    first = free_offset()
    async with HaragUp(first, tmp_path / "first", "--fault-injection", "--no-ingest"):
        # The same offset again: refused before anything starts, in one line.
        code, out, err = await run_harag(
            "up", "--port-offset", str(first), "--data-dir", str(tmp_path / "again"),
            "--no-trace-viewer",
        )  # fmt: skip
        assert code != 0
        line = err.strip()
        assert "\n" not in line and "Traceback" not in err, err
        taken = process_ports(first)["embedder-primary"]
        assert f"port {taken} for embedder-primary is already in use (and 6 more)" in line
        assert "--port-offset" in line and "SERVING" not in out
        assert not (tmp_path / "again").exists(), "no process of the refused mesh started"

        second = free_offset(after=first + 97)
        async with HaragUp(second, tmp_path / "second", "--fault-injection", "--no-ingest") as up:
            assert any(f"gateway on {gateway_of(second)}" in line for line in up.lines)
            code, out, err = await run_harag(
                "faults", "embedder-primary", "set", "--error-rate", "1", "--port-offset",
                str(second),
            )  # fmt: skip
            assert code == 0, err
            assert "'errorRate': 1.0" in out
            # The first mesh's embedder-primary is untouched: the CLI found each mesh's own.
            code, out, err = await run_harag(
                "faults", "embedder-primary", "show", "--port-offset", str(first)
            )
            assert code == 0 and "fault none" in out, (out, err)
            code, out, err = await run_harag(
                "faults", "embedder-primary", "show", "--port-offset", str(second)
            )
            assert code == 0 and "'errorRate': 1.0" in out, (out, err)
        assert up.returncode == 0, up.rest[-2000:]


async def test_harag_up_refuses_a_taken_port_in_one_line_and_starts_nothing(tmp_path):
    offset = free_offset()
    ports = process_ports(offset)
    with socket.socket() as blocker:  # retriever-fallback's port is taken
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past a TIME_WAIT
        blocker.bind(("127.0.0.1", ports["retriever-fallback"]))
        blocker.listen()
        code, out, err = await run_harag(
            "up", "--port-offset", str(offset), "--data-dir", str(tmp_path / "data"),
            "--no-trace-viewer",
        )  # fmt: skip
    assert code == 1 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"harag up: port {ports['retriever-fallback']} for retriever-fallback is already in use"
    ), err
    assert "harag up --port-offset " in err
    assert all(port_is_free(p) for name, p in ports.items() if name != "retriever-fallback")
    assert not (tmp_path / "data").exists(), "no retriever started"


async def test_a_component_that_cannot_start_is_named_with_its_output_and_not_restarted(tmp_path):
    data_dir = tmp_path / "a-file"
    data_dir.write_text("the retrievers cannot make their directories below a file")
    started = time.monotonic()
    code, out, err = await run_harag(
        "up", "--port-offset", str(free_offset()), "--data-dir", str(data_dir),
        "--no-trace-viewer", "--start-timeout", "60",
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in err
    # Both retrievers fail the same way; whichever exits first is the one named.
    assert re.search(r"harag up: retriever-(primary|fallback) exited with code 1", err), err
    assert "Not a directory" in err.split("harag up:", 1)[1], "its own last words are shown"
    assert "restart #2" not in out, "a process that cannot start is not restarted in a loop"
    assert time.monotonic() - started < 50


async def test_harag_up_runs_gateway_replicas_sharing_a_local_redis(tmp_path):
    offset = free_offset()
    first = gateway_of(offset)
    host, port = first.rsplit(":", 1)
    second = f"{host}:{int(port) + 1}"
    async with HaragUp(offset, tmp_path / "data", "--gateways", "2", "--redis") as up:
        banner = "\n".join(up.lines[-12:])
        assert f"replicas: 2 gateways on {first}, {second}, sharing Redis at redis://" in banner
        question = "What does the gateway cache when replicas share Redis?"
        replies = []
        for address in (first, second):
            code, out, err = await run_harag("query", question, "--addr", address, "--json")
            assert code == 0, err
            replies.append(json.loads(out))
        # Computed by the first replica, served by the second from the shared cache.
        assert not replies[0].get("cached") and replies[1].get("cached") is True
        assert replies[1]["answer"] == replies[0]["answer"]
    assert up.returncode == 0, up.rest[-2000:]
    assert "gateway=0" in up.rest and "gateway-2=0" in up.rest, up.rest[-2000:]


async def test_harag_up_refuses_a_bad_gateway_count_in_one_line(tmp_path):
    code, _, err = await run_harag("up", "--gateways", "0", "--data-dir", str(tmp_path))
    assert code == 2 and "Traceback" not in err
    assert "--gateways: '0' is not a whole number in 1..16" in err
