"""Each service starts from exactly its image's command line and reaches SERVING through the
same probe its HEALTHCHECK runs, then stops cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import SERVICES, compose_env, load_compose
from service_process import ServiceProcess, command_line, free_port, probe, service_env

COMPOSE = load_compose()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_serves_from_the_image_command_line(service, tmp_path):
    spec = COMPOSE["services"][service.name]
    argv = command_line(service, spec.get("command"))
    env = service_env(service, compose_env(COMPOSE, service.name), tmp_path)
    with ServiceProcess(service, argv, env) as process:
        assert process.wait_serving().stdout.strip() == "SERVING"
        # The entry point's shell has exec'd python: the process the runtime started (PID 1 in
        # the container) is python itself, so SIGTERM reaches the server.
        assert Path(f"/proc/{process.proc.pid}/exe").resolve().name.startswith("python")
        process.terminate()
        drain = float(env["HARAG_SHUTDOWN_DRAIN_S"])
        grace = float(env["HARAG_SHUTDOWN_GRACE_S"])
        assert process.wait_exit(drain + grace + 5) == 0, process.output()


def test_the_probe_fails_when_nothing_serves(tmp_path):
    service = SERVICES[0]
    env = service_env(service, {}, tmp_path)
    env["HARAG_PORT"] = str(free_port())
    result = probe(service, env)
    assert result.returncode == 1 and result.stdout.strip() == "UNREACHABLE"
