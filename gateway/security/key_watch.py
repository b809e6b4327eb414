"""The key file on disk, re-read when it changes, without a restart.

Polled, not watched with inotify: a Kubernetes Secret volume updates by writing a new
directory and swapping the `..data` symlink, so the file's path keeps its name while what
it resolves to changes. `os.stat` follows the symlink, so (device, inode, size, mtime) of
the path changes with the swap; a plain rewrite or `mv` changes it too. (A Secret mounted
with `subPath` is a copy that never updates: mount the whole volume.)

A file that cannot be read or parsed on reload leaves the keys of the last good version in
force and logs one error per distinct bad version; at start it is fatal (the caller exits 2).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from gateway.security.keys import EMPTY, KeyFileError, KeySet, parse_key_file
from servicekit.background import BackgroundTasks

log = logging.getLogger("harag.gateway.auth")

Signature = tuple[int, int, int, int]


def _signature(path: Path) -> Signature:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_key_file(path: Path) -> KeySet:
    """The keys in `path`; raises KeyFileError (one line, naming the file) when unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise KeyFileError(f"key file {path}: cannot be read: {reason}") from None
    try:
        return parse_key_file(text)
    except KeyFileError as exc:
        raise KeyFileError(f"key file {path}: {exc}") from None


class KeyFileWatcher:
    """The current keys of one key file; `start()` polls it every `interval_s`."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self.keys: KeySet = EMPTY
        self._seen: Signature | None = None
        self._tasks = BackgroundTasks("key file watch")

    def load(self) -> KeySet:
        """The first load; raises KeyFileError, which is fatal at start."""
        signature = _signature_or_none(self.path)
        self.keys = read_key_file(self.path)
        self._seen = signature
        return self.keys

    def check(self) -> bool:
        """Re-reads the file when it changed; True when new keys took effect."""
        signature = _signature_or_none(self.path)
        if signature is not None and signature == self._seen:
            return False
        if signature is None and self._seen is None:
            return False  # still missing: said so already
        self._seen = signature
        try:
            keys = read_key_file(self.path)
        except KeyFileError as exc:
            log.error(
                "key file not reloaded; the previous keys stay in force",
                extra={"error": str(exc), "keys_in_force": len(self.keys.keys)},
            )
            return False
        self.keys = keys
        log.info("key file reloaded", extra={"path": str(self.path), "keys": len(keys.keys)})
        return True

    def start(self) -> None:
        self._tasks.start("poll", self._poll)

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.check()


def _signature_or_none(path: Path) -> Signature | None:
    try:
        return _signature(path)
    except OSError:
        return None
