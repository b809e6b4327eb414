"""Loopback ports for local meshes: free ones, taken ones, and who listens on one.

One implementation for the supervisor (`harag up`), the demo, the tests and the benchmarks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

LOOPBACK = "127.0.0.1"
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could listen on `port` now.

    SO_REUSEADDR as a gRPC server sets it, so a port with connections only in TIME_WAIT (a mesh
    that just stopped) counts as free, while one with a listener does not.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def taken_ports(ports: Mapping[str, int]) -> dict[str, int]:
    """The entries of `ports` (process name -> port) whose port is already in use."""
    return {name: port for name, port in ports.items() if not port_is_free(port)}


def free_port_offset(ports: Iterable[int], start: int = 100, step: int = 100) -> int | None:
    """The smallest offset (start, start + step, ...) under which every port is free."""
    wanted = list(ports)
    for offset in range(start, 65535 - max(wanted, default=0), step):
        if all(port_is_free(port + offset) for port in wanted):
            return offset
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds the listening socket of `port`; None when this system
    cannot tell (no /proc). A health probe alone cannot tell our server from another's."""
    if not Path("/proc/net/tcp").exists():
        return None
    inodes = _listening_inodes(port)
    wanted = {f"socket:[{inode}]" for inode in inodes}
    # `python -m gateway --workers N`: the parent's children (its workers) hold the port.
    return any(_holds(p, wanted) for p in (pid, *_children(pid)))


def _children(pid: int) -> list[int]:
    try:
        text = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _holds(pid: int, sockets: set[str]) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False  # the process is gone
    for fd in fds:
        try:
            if os.readlink(fd_dir / fd) in sockets:
                return True
        except OSError:
            continue  # closed while we looked
    return False
