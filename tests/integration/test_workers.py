"""`python -m gateway --workers N` as an operator runs it: real processes on one port.

The kernel spreads *connections* across the workers (SO_REUSEPORT), so the tests open a
fresh connection per query; which worker answered is in each "answered" log line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import grpc
import pytest
from processes import REPO, free_port
from waiting import wait_until

from harag.v1 import fault_injection_pb2, gateway_pb2, gateway_pb2_grpc


async def query_on_new_connection(address: str, text: str) -> gateway_pb2.QueryResponse:
    # A local subchannel pool: a channel of its own is a connection of its own.
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        reply: gateway_pb2.QueryResponse = await gateway_pb2_grpc.RagGatewayServiceStub(
            channel
        ).Query(gateway_pb2.QueryRequest(query=text), timeout=10)
        return reply


def answered_by(lines: list[dict]) -> set[int]:
    return {line["pid"] for line in lines if line.get("msg") == "answered" and "pid" in line}


# Several meshes, Redis and SIGKILLs on two shared cores: one rerun when load makes it miss.
@pytest.mark.flaky(reruns=1)
async def test_two_workers_both_answer_and_sigterm_drains_in_flight_queries(
    clean_faults, extra_gateway, mesh
):
    async with extra_gateway(HARAG_WORKERS="2", HARAG_CACHE_TTL_S="0") as gw:
        # The kernel hashes each new connection to a worker: 40 connections all landing on
        # one of two listening workers would happen once in 2**39 runs.
        pids: set[int] = set()
        for n in range(40):
            reply = await query_on_new_connection(gw.address, f"What is a circuit breaker? {n}")
            assert reply.answer and not reply.degraded
            pids = await wait_until(
                lambda: answered_by(mesh.logs.json_of("gateway-extra")),
                what="answers logged",
            )
            if len(pids) == 2:
                break
        assert len(pids) == 2, f"40 connections all went to one worker: {pids}"

        # Queries in flight when SIGTERM arrives still get their answers: these wait on a
        # hung generator until their attempt times out, then the fallback answers.
        await mesh.set_fault(
            "generator-primary", fault_injection_pb2.Fault(hang=True, methods=["Generate"])
        )
        in_flight = [
            asyncio.ensure_future(
                query_on_new_connection(gw.address, f"What does a bulkhead do? {n}")
            )
            for n in range(6)
        ]
        parent = gw.supervisor.procs["gateway-extra"]
        before = (await mesh.control.get_faults("generator-primary")).injected_total

        async def waiting_on_generator() -> bool:
            faults = await mesh.control.get_faults("generator-primary")
            return faults.injected_total - before >= len(in_flight)

        await wait_until(waiting_on_generator, what="every query waits on the slowed generator")
        assert not any(t.done() for t in in_flight)
        parent.send_signal(signal.SIGTERM)
        replies = await asyncio.gather(*in_flight)
        assert all(r.answer for r in replies)
        assert await asyncio.wait_for(parent.wait(), 20) == 0
        stopped = [line for line in mesh.logs.json_of("gateway-extra") if line["msg"] == "stopped"]
        assert {"codes": [0, 0]}.items() <= stopped[-1].items()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent, the killed gateway, cannot reap it).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_parent(port: int, stderr_path: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARAG_", "OTEL_"))}
    env |= {"HARAG_METRICS_PORT": "0"}
    with open(stderr_path, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--workers", "2", "--port", str(port)],
            cwd=REPO,
            env=env,
            stderr=err,
        )


def json_lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


async def test_a_worker_that_cannot_listen_stops_the_gateway_with_an_error(tmp_path):
    port = free_port()
    taken = socket.socket()  # no SO_REUSEPORT: the workers cannot share this port
    taken.bind(("127.0.0.1", port))
    taken.listen()
    try:
        log = str(tmp_path / "gateway.log")
        parent = run_parent(port, log)
        code = await asyncio.wait_for(asyncio.to_thread(parent.wait), 60)
    finally:
        taken.close()
    assert code != 0
    assert any(line["msg"] == "worker failed to start" for line in json_lines(log))


async def test_workers_shut_down_when_their_parent_is_killed(tmp_path):
    log = str(tmp_path / "gateway.log")
    parent = run_parent(free_port(), log)
    try:
        serving = await wait_until(
            lambda: [
                line
                for line in json_lines(log)
                if line["msg"] == "serving" and line["logger"] == "harag.gateway.workers"
            ],
            what="the parent reports its workers serving",
            timeout_s=60,
        )
        pids = serving[0]["pids"]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        parent.kill()
        parent.wait()
        await wait_until(
            lambda: not any(alive(pid) for pid in pids),
            what="orphaned workers exit",
            timeout_s=20,
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def test_a_worker_that_dies_is_replaced_and_the_port_keeps_serving(tmp_path):
    log = str(tmp_path / "gateway.log")
    port = free_port()
    parent = run_parent(port, log)
    try:

        def serving_pids() -> set[int]:
            return {
                line["pid"]
                for line in json_lines(log)
                if line["msg"] == "serving" and line["logger"] == "harag.server"
            }

        await wait_until(
            lambda: len(serving_pids()) == 2, what="both workers serving", timeout_s=60
        )
        first = serving_pids()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = await wait_until(
            lambda: serving_pids() - first, what="a new worker serving", timeout_s=30
        )
        assert victim not in replaced and parent.poll() is None
        assert alive(max(first)), "the other worker kept running"
        assert any(line["msg"] == "worker died: restarting" for line in json_lines(log))
        parent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(parent.wait), 30) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
