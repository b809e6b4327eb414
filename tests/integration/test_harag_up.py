"""`harag up` (what `make run` runs) as a user runs it: start, query, Ctrl-C, clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

from processes import REPO

HARAG = [sys.executable, "-m", "harag_cli.main"]
PORTS = (50051, 50061, 50062, 50071, 50072, 50081, 50082)


def free_offset() -> int:
    """A port offset under which all seven default ports are free."""
    for offset in range(1000, 9000, 97):
        try:
            for port in PORTS:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port range")


async def run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *HARAG,
        *argv,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HARAG_", "OTEL_"))}


async def test_harag_up_serves_ingests_answers_and_stops_cleanly(tmp_path):
    offset = free_offset()
    env = clean_env()
    up = await asyncio.create_subprocess_exec(
        *HARAG,
        "up",
        "--port-offset",
        str(offset),
        "--data-dir",
        str(tmp_path / "data"),
        "--no-trace-viewer",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    lines: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(up.stdout.readline(), 90)
            assert raw, "harag up ended early:\n" + "\n".join(lines[-40:])
            lines.append(raw.decode().rstrip())
            if "processes SERVING" in lines[-1]:
                break
        assert any("ingested the sample corpus (44 documents, 0 failed)" in line for line in lines)
        gateway = f"127.0.0.1:{50051 + offset}"
        code, out, err = await run(
            "query",
            "What do the k1 and b parameters control in BM25?",
            "--addr",
            gateway,
            "--json",
            env=env,
        )
        assert code == 0, err
        reply = json.loads(out)
        assert reply["sources"][0]["id"] == "04-bm25-ranking-function"
        code, out, _ = await run("health", "--addr", gateway, env=env)
        assert code == 0 and "system: HEALTHY" in out
        code, out, _ = await run("breakers", "--addr", gateway, env=env)
        assert code == 0 and out.count("CLOSED") == 6
    finally:
        up.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(up.stdout.read(), 60)
        await up.wait()
    tail = rest.decode()
    assert up.returncode == 0, tail[-2000:]
    assert "stopped (gateway=0" in tail and all(
        f"{name}=0" in tail for name in ("embedder-primary", "retriever-fallback")
    ), tail[-2000:]


async def test_harag_up_names_a_process_that_cannot_start(tmp_path):
    offset = free_offset()
    with socket.socket() as blocker:  # retriever-fallback's port is taken
        blocker.bind(("127.0.0.1", 50072 + offset))
        blocker.listen()
        code, _, err = await run(
            "up",
            "--port-offset",
            str(offset),
            "--data-dir",
            str(tmp_path / "data"),
            "--no-trace-viewer",
            "--start-timeout",
            "30",
            env=clean_env(),
        )
    assert code == 1
    assert "harag up: retriever-fallback exited with code 1 during start-up" in err
