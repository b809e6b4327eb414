"""`python -m gateway --workers N`: N gateway processes on one port, and their parent.

The parent does no gRPC work. It starts N copies of itself (`python -m gateway` with the
same arguments and `--workers 1`), each listening on the same port with SO_REUSEPORT, so
the kernel spreads incoming *connections* across them (a connection, with every call on
it, stays with one worker). It then supervises them:

- start-up: every worker reports on a pipe once it is listening; a worker that exits
  before that makes the parent stop the others and exit non-zero;
- a worker that dies later is restarted (after `RESTART_DELAY_S`), so the pod keeps its
  capacity; if the restarted worker fails to start, the parent exits non-zero;
- SIGTERM/SIGINT is forwarded to every worker, each drains as a single gateway does
  (health NOT_SERVING, `shutdown_drain_s`, then `shutdown_grace_s` for in-flight calls),
  and the parent exits 0 once all of them did;
- each worker holds the read end of a pipe whose write end only the parent has: if the
  parent dies (SIGKILL), the pipe reaches end of file and the worker shuts down gracefully
  instead of living on unsupervised.

Everything else is per worker (see the README's "Gateway workers"): breakers, the answer
cache, coalescing, the retry budget, hedging statistics, admission control (each worker
probes its own queue through a private abstract Unix socket, because a probe sent to the
shared port may land on another worker), and the /metrics endpoint (worker i on the metrics
port + i).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import GatewayConfig
from servicekit.metrics import resolve_port

log = logging.getLogger("harag.gateway.workers")

# Set by the parent for each worker: "<index>:<ready fd>:<lifeline fd>". Internal to the
# parent-worker protocol, so deliberately not a HARAG_* setting.
WORKER_ENV = "GATEWAY_WORKER_PIPES"
RESTART_DELAY_S = 1.0
STOP_MARGIN_S = 10.0  # beyond drain + grace, before a worker that will not stop is killed


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process knows of its place: its index and its pipes to the parent."""

    index: int
    ready_fd: int
    lifeline_fd: int

    def report_ready(self) -> None:
        """Tells the parent this worker is listening (once)."""
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, b"ready\n")
            os.close(self.ready_fd)

    def watch_parent(self) -> None:
        """Shuts this worker down gracefully (SIGTERM to itself) when the parent is gone."""
        loop = asyncio.get_running_loop()

        def parent_gone() -> None:
            loop.remove_reader(self.lifeline_fd)
            log.warning("gateway parent process is gone: shutting down")
            os.kill(os.getpid(), signal.SIGTERM)

        loop.add_reader(self.lifeline_fd, parent_gone)

    def private_address(self) -> str:
        """A listening address only this process has (for its admission self-probe)."""
        return own_address()


def own_address() -> str:
    """A listening address only this process has (an abstract socket named by its pid)."""
    return f"unix-abstract:harag-gateway-{os.getpid()}"


def worker_role() -> WorkerRole | None:
    """This process's role when a `--workers N` parent started it, else None."""
    value = os.environ.get(WORKER_ENV)
    if not value:
        return None
    index, ready_fd, lifeline_fd = (int(part) for part in value.split(":"))
    return WorkerRole(index, ready_fd, lifeline_fd)


def worker_metrics_port(cfg: GatewayConfig, index: int) -> int:
    """Worker `index`'s /metrics port: the configured one + index (0 stays off)."""
    first = resolve_port(cfg.server.metrics_port, cfg.port)
    return first + index if first > 0 else 0


class Worker:
    """One worker process and the parent's ends of its pipes."""

    def __init__(self, index: int, argv: Sequence[str], cfg: GatewayConfig) -> None:
        self.index = index
        self.argv = list(argv)
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self._ready_r = -1
        self._lifeline_w = -1

    async def spawn(self) -> None:
        ready_r, ready_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        env = {
            **os.environ,
            WORKER_ENV: f"{self.index}:{ready_w}:{lifeline_r}",
            "HARAG_METRICS_PORT": str(worker_metrics_port(self.cfg, self.index)),
        }
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                *self.argv,
                "--workers",
                "1",  # the last flag wins: a worker never starts workers of its own
                env=env,
                pass_fds=(ready_w, lifeline_r),
            )
        finally:
            os.close(ready_w)
            os.close(lifeline_r)
        self._ready_r, self._lifeline_w = ready_r, lifeline_w

    async def wait_ready(self) -> bool:
        """True once the worker listens; False if it exited first."""
        got = await asyncio.to_thread(os.read, self._ready_r, 64)
        os.close(self._ready_r)
        return got.startswith(b"ready")

    async def wait_exit(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._lifeline_w >= 0:
            os.close(self._lifeline_w)
            self._lifeline_w = -1
        return code

    def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)

    async def stop(self, timeout_s: float) -> int:
        """SIGTERM, then the exit code; killed (and counted as failed) if it will not stop."""
        self.terminate()
        try:
            return await asyncio.wait_for(self.wait_exit(), timeout_s)
        except TimeoutError:
            log.error("worker did not stop: killed", extra={"worker": self.index})
            assert self.proc is not None
            self.proc.kill()
            await self.wait_exit()
            return 1

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0


class WorkerParent:
    """Starts, watches, restarts and stops the workers; `run()` returns the exit code."""

    def __init__(self, cfg: GatewayConfig, argv: Sequence[str]) -> None:
        self.cfg = cfg
        self.workers = [Worker(i, argv, cfg) for i in range(cfg.workers)]
        self.stopping = asyncio.Event()
        self.stop_timeout_s = (
            cfg.server.shutdown_drain_s + cfg.server.shutdown_grace_s + STOP_MARGIN_S
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        for worker in self.workers:
            await worker.spawn()
        if not await self._all_ready(self.workers):
            return await self._stop_all(failed=True)
        log.info(
            "serving",
            extra={
                "workers": len(self.workers),
                "pids": [w.pid for w in self.workers],
                "port": self.cfg.port,
            },
        )
        exits = {asyncio.ensure_future(w.wait_exit()): w for w in self.workers}
        stop = asyncio.ensure_future(self.stopping.wait())
        while not self.stopping.is_set():
            await asyncio.wait({*exits, stop}, return_when=asyncio.FIRST_COMPLETED)
            for done in [task for task in exits if task.done()]:
                worker = exits.pop(done)
                if self.stopping.is_set():
                    continue
                log.error(
                    "worker died: restarting",
                    extra={"worker": worker.index, "pid": worker.pid, "code": done.result()},
                )
                await asyncio.sleep(RESTART_DELAY_S)
                await worker.spawn()
                if not await self._all_ready([worker]):
                    stop.cancel()
                    return await self._stop_all(failed=True)
                exits[asyncio.ensure_future(worker.wait_exit())] = worker
        for task in exits:
            task.cancel()
        return await self._stop_all(failed=False)

    async def _all_ready(self, workers: Sequence[Worker]) -> bool:
        ready = asyncio.ensure_future(asyncio.gather(*(w.wait_ready() for w in workers)))
        stop = asyncio.ensure_future(self.stopping.wait())
        waiting: set[asyncio.Future[Any]] = {ready, stop}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not ready.done():  # asked to stop during start-up: not a failure of a worker
            return False
        failed = [w for w, ok in zip(workers, ready.result(), strict=True) if not ok]
        for worker in failed:
            log.error(
                "worker failed to start",
                extra={"worker": worker.index, "code": await worker.wait_exit()},
            )
        return not failed

    async def _stop_all(self, failed: bool) -> int:
        log.info("stopping workers", extra={"failed": failed})
        codes = await asyncio.gather(*(w.stop(self.stop_timeout_s) for w in self.workers))
        log.info("stopped", extra={"codes": list(codes)})
        if failed and not self.stopping.is_set():
            return next((code for code in codes if code not in (0, -signal.SIGTERM)), 1) or 1
        return 0 if all(code == 0 for code in codes) else 1


def run_workers(cfg: GatewayConfig, argv: Sequence[str]) -> int:
    """The parent process of `python -m gateway --workers N` (N > 1)."""
    return asyncio.run(WorkerParent(cfg, argv).run())
