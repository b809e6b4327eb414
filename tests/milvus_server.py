"""A real Milvus standalone server (2.3, from the PyPI package `milvus`) as a child process.

The package ships the engine's own binary (etcd embedded, local storage, RocksMQ); this
starts it on free loopback ports with its data in a directory of the caller's, so a test
can SIGKILL it and start it again on the same data and ports (the retriever reconnects to
the same address, as to a cluster whose proxy came back). The package's own launcher binds
its ports without SO_REUSEADDR, which fails on a restart while old sockets linger, hence
this launcher around the package's config template.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import milvus

from harag_cli.localports import free_port

REPO = Path(__file__).resolve().parents[1]
# The binaries unpack (about 150 MB, once: the package skips files whose checksum matches)
# to a cache outside each test's directory, so every server a run starts reuses them.
BINARY_CACHE = REPO / "var" / "milvus-bin"
START_TIMEOUT_S = 120.0


def unpack_binaries() -> Path:
    milvus._initialize_data_files(str(BINARY_CACHE))  # writes BINARY_CACHE/bin
    return BINARY_CACHE / "bin"


class MilvusServer:
    """`with MilvusServer(data_dir) as server:` is a started engine at `server.uri`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.bin_dir = unpack_binaries()
        self.port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        config = milvus.MilvusServerConfig(data_dir=str(self.data_dir))
        config.resolve_storage()  # data, logs and etcd directories under data_dir
        ports = [key for key in config.configurable_items if key.endswith("_port")]
        for key in ports:
            config.configurable_items[key][1] = self.port if key == "proxy_port" else free_port()
        config.write_config()  # data_dir/configs/milvus.yaml, read relative to the cwd

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),
            "MILVUS_RUN_DIR": str(self.data_dir / "run"),
            "LD_LIBRARY_PATH": f"{self.bin_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        log = (self.data_dir / "logs" / "milvus-stdout.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "milvus"), "run", "standalone"],
                cwd=self.data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a test's Ctrl-C does not reach it; stop() does
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if b"OK" in reply.read():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"milvus not healthy in {START_TIMEOUT_S} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / "logs" / "milvus-stdout.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the engine gets no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM; the engine's graceful stop can take half a minute, so after a few
        seconds SIGKILL (the tests' data is throwaway; the restart test kills on purpose)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> MilvusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
