"""The local supervisor behind `harag up`: what it claims, what it restarts, when it gives up."""

from __future__ import annotations

import sys
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from processes import LogBook

from harag_cli.localports import free_port, listens_on
from harag_cli.supervisor import (
    ProcessSpec,
    RestartPolicy,
    StartupError,
    Supervisor,
    mesh_specs,
    probe,
)

QUICK = RestartPolicy(backoff_s=(0.05, 0.1, 0.2), give_up_after=3, stable_after_s=0.0)


def crashing(name: str, port: int) -> ProcessSpec:
    code = "import sys; print('bad setting HARAG_X=7', file=sys.stderr); sys.exit(3)"
    return ProcessSpec(name, [sys.executable, "-c", code], port)


async def foreign_health_server(port: int) -> grpc.aio.Server:
    """Somebody else's server on `port`, SERVING to any probe."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server


async def test_a_process_that_never_starts_is_given_up_on_with_its_last_output():
    log = LogBook()
    supervisor = Supervisor([crashing("broken", free_port())], sink=log, policy=QUICK)
    started = time.monotonic()
    await supervisor.start()
    try:
        with pytest.raises(StartupError) as failure:
            await supervisor.wait_serving(timeout_s=30)
    finally:
        await supervisor.stop()
    message = str(failure.value)
    assert message.startswith("broken exited with code 3 3 times in a row before reaching SERVING")
    assert "not restarting it" in message and "bad setting HARAG_X=7" in message
    assert supervisor.restarts["broken"] == 2, "three runs in all, then no more"
    assert time.monotonic() - started >= 0.05 + 0.1, "restarts wait their back-off"
    assert any("not restarting it" in line for line in log.of("supervisor"))


async def test_serving_is_claimed_only_for_the_process_it_started():
    port = free_port()
    idle = "import time; time.sleep(60)"  # alive, but never listens
    supervisor = Supervisor(
        [ProcessSpec("quiet", [sys.executable, "-c", idle], port)], sink=LogBook(), restart=False
    )
    await supervisor.start()
    other = await foreign_health_server(port)  # takes the port after the supervisor's check
    try:
        assert await probe(f"127.0.0.1:{port}") == "SERVING"
        assert listens_on(supervisor.procs["quiet"].pid, port) is False
        assert not await supervisor.is_serving("quiet")
        with pytest.raises(StartupError, match="quiet did not report SERVING"):
            await supervisor.wait_serving(timeout_s=1)
    finally:
        await supervisor.stop()
        await other.stop(None)


async def test_start_refuses_a_port_in_use_and_starts_nothing():
    port = free_port()
    other = await foreign_health_server(port)
    supervisor = Supervisor([crashing("late", port)], sink=LogBook())
    try:
        with pytest.raises(StartupError, match=f"port {port} for late is already in use"):
            await supervisor.start()
        assert supervisor.procs == {}
    finally:
        await other.stop(None)


async def test_the_back_off_starts_over_after_a_run_that_stayed_up(tmp_path):
    log = LogBook()
    spec = next(
        s
        for s in mesh_specs(ports={"generator-fallback": free_port()}, data_dir=tmp_path)
        if s.name == "generator-fallback"
    )
    spec.env["HARAG_METRICS_PORT"] = "0"
    supervisor = Supervisor([spec], sink=log, policy=QUICK)
    await supervisor.start()
    try:
        for _ in range(3):
            await supervisor.wait_serving(timeout_s=60)  # waits for the restarted one
            killed = supervisor.procs["generator-fallback"]
            supervisor.kill("generator-fallback")
            await killed.wait()
        await supervisor.wait_serving(timeout_s=60)
    finally:
        await supervisor.stop()
    delays = [line for line in log.of("supervisor") if "restart #" in line]
    assert len(delays) == 3 and all(line.endswith("in 0.05s") for line in delays), delays
