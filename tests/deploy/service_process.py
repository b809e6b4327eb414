"""Runs a service the way its container does: the image's command line and environment.

Only what cannot be the same on a shared test machine changes: the process listens on
loopback and on free ports, files live in a temporary directory, and the trace exporter points
at a closed local port instead of the `jaeger` host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import grpc
from deploy_support import (
    GATEWAY_CONFIG,
    REPO,
    Service,
    env_of,
    healthcheck_command,
    image_cmd,
    image_entrypoint,
)
from processes import free_port

from harag_cli.certs import CA_FILE, create_mesh_certificates

# The image's interpreter is /opt/venv/bin/python on PATH; here it is this venv's python.
IMAGE_PYTHON = "python"
IMAGE_SHELL = "/bin/sh"


def localize(argv: list[str]) -> list[str]:
    """An exec-form command of the image, run here: its `python` is this venv's python. A
    command run through the shell finds `python` on PATH, which service_env points here."""
    if argv[0] == IMAGE_SHELL:
        return argv
    assert argv[0] == IMAGE_PYTHON, argv
    return [sys.executable, *argv[1:]]


def command_line(service: Service, args: list[str] | None) -> list[str]:
    """ENTRYPOINT plus the deployment's args (compose `command`, k8s `args`), else CMD."""
    return localize([*image_entrypoint(service), *(image_cmd(service) if args is None else args)])


def service_env(service: Service, deployed: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Image ENV, then the deployment's env, then the loopback substitutions."""
    image = {k: v for k, v in env_of(service.image_stages()[-1]).items() if k != "PATH"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HARAG_", "OTEL_"))}
    env = {**clean, **image, **deployed}
    # The image's PATH starts with its venv; here that is this venv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    env["HARAG_HOST"] = "127.0.0.1"
    env["HARAG_PORT"] = str(free_port())
    env["HARAG_METRICS_PORT"] = str(free_port())
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    if "HARAG_DATA_DIR" in env:
        env["HARAG_DATA_DIR"] = str(tmp_path / "data")
    if "HARAG_CONFIG" in env:
        env["HARAG_CONFIG"] = str(GATEWAY_CONFIG)
    if "HARAG_AUTH_KEY_FILE" in env:  # the mounted Secret: a valid file with no keys yet
        key_file = tmp_path / "keys.json"
        key_file.write_text('{"keys": []}')
        env["HARAG_AUTH_KEY_FILE"] = str(key_file)
    if "HARAG_ADMIN_PORT" in env:
        env["HARAG_ADMIN_PORT"] = str(free_port())
    if "HARAG_HEALTH_PORT" in env:
        env["HARAG_HEALTH_PORT"] = str(free_port())
    if "HARAG_TLS_CERT_FILE" in env:
        # The deployment's mounted certificates: a throwaway mesh CA's, same file names.
        certs = tmp_path / "certs"
        if not (certs / CA_FILE).exists():
            create_mesh_certificates(certs)
        for key in ("HARAG_TLS_CERT_FILE", "HARAG_TLS_KEY_FILE", "HARAG_TLS_CA_FILE"):
            env[key] = str(certs / Path(env[key]).name)
    return env


def gateway_credentials(env: dict[str, str]) -> grpc.ChannelCredentials:
    """What the gateway dials a component of `env` (after service_env) with."""
    certs = Path(env["HARAG_TLS_CA_FILE"]).parent
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / CA_FILE).read_bytes(),
        private_key=(certs / "gateway.key").read_bytes(),
        certificate_chain=(certs / "gateway.crt").read_bytes(),
    )


def probe(service: Service, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, in the service's environment."""
    command = localize(healthcheck_command(service.image_stages()[-1]))
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=10)


class ServiceProcess:
    """A started service; `with` stops it (SIGTERM) and keeps its output for failure messages."""

    def __init__(self, service: Service, argv: list[str], env: dict[str, str]) -> None:
        self.service, self.argv, self.env = service, argv, env
        self.port = int(env["HARAG_PORT"])
        self.proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def wait_serving(self, timeout_s: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Polls with the image's own HEALTHCHECK command until it reports SERVING."""
        from servicekit.healthcheck import check

        deadline = time.monotonic() + timeout_s
        probe_disagrees = 0
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv} exited {self.proc.returncode}:\n{self.output()}")
            result = probe(self.service, self.env)
            if result.returncode == 0:
                return result
            # A server that is up while the image's probe keeps failing is a probe/port mismatch,
            # not a slow start: say so instead of waiting out the timeout.
            address = f"127.0.0.1:{self.port}"
            status = check(address)
            probe_disagrees = probe_disagrees + 1 if status == "SERVING" else 0
            if probe_disagrees >= 3 or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"{self.argv}: the HEALTHCHECK probe said {result.stdout.strip()!r} "
                    f"{result.stderr.strip()!r} while {address} (HARAG_PORT) reports "
                    f"{status}:\n{self.output()}"
                )
            time.sleep(0.2)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.argv} still running {timeout_s}s after SIGTERM") from None
