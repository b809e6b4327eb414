"""A throw-away `redis-server` on a free loopback port: for tests, benchmarks and local
multi-gateway runs. Nothing is persisted (no RDB, no AOF), its files live in a temporary
directory, and it can be killed, frozen and thawed to see what the gateway does then."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from harag_cli.localports import LOOPBACK, free_port


class RedisServerError(RuntimeError):
    pass


def ping(port: int, timeout_s: float = 0.5, host: str = LOOPBACK) -> bool:
    """True when a Redis server on `port` answers PING within `timeout_s`."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LocalRedis:
    """`with LocalRedis() as redis:` a running server at `redis.url` until the block ends.

    `kill()` (SIGKILL), `freeze()` (SIGSTOP: the port still accepts connections, nothing
    answers) and `thaw()` (SIGCONT) act on the process; `start()` after `kill()` brings a
    new, empty server up on the same port.
    """

    def __init__(self, executable: str = "redis-server", port: int | None = None) -> None:
        found = shutil.which(executable)
        if found is None:
            raise RedisServerError(f"{executable} is not installed (apt-get install redis-server)")
        self.executable = found
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="harag-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "redis.log"

    def start(self, timeout_s: float = 10.0) -> None:
        argv = [
            self.executable,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.frozen = False
        deadline = time.monotonic() + timeout_s
        while not ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RedisServerError(f"redis-server did not answer PING on {self.port}:\n{log}")
            time.sleep(0.02)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RedisServerError("redis-server is not running")
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: gone at once, connections reset, nothing saved."""
        self._signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP: connections open and accepted by the kernel, but nothing answers."""
        self._signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        self._signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """Kills the server if it runs (a frozen one is thawed first so it can die cleanly)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.frozen = False

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
