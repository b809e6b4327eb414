"""Durable document store: a snapshot plus an append-only write-ahead log, in one directory.

Files in the data directory:
  LOCK          flock'd by the owning process, so two retrievers never share a directory
  snapshot.bin  compacted state, replaced atomically: BEGIN(count), UPSERT chunks, END(count)
  wal.log       one framed UPSERT, DELETE or REPLACE record per write since the snapshot

The store holds entries (chunks, or whole documents written by the older Upsert) by id,
groups them by the document they belong to (`StoredDocument.document_id`) and keeps each
document's content hash. A REPLACE record swaps all chunks of some documents at once, so a
replay, like the live write, never leaves half a document; the snapshot's BEGIN record
carries the content hashes.
  wal.log.discarded-<ns>   a torn tail cut off the log at load, kept for inspection

A write is appended to the log and fdatasync'ed before the call returns, so an acknowledged
write survives SIGKILL or power loss. A process killed mid-append leaves a torn frame at the
tail; loading detects it by length/CRC, moves it aside and truncates the log there, so
later appends are never hidden behind garbage. Every `snapshot_every` records the whole state is
written to `snapshot.tmp`, fsync'ed, `os.replace`d over the snapshot (directory fsync'ed),
and only then is the log emptied. A crash between those two steps replays the old log over
the new snapshot, which is harmless: an upsert replaces a whole entry, a replace replaces a
whole document and a delete removes it, so replaying records whose effect is already in
the snapshot changes nothing.

Not thread-safe: the backend that owns the store serialises calls with its own lock.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retriever_svc import records
from retriever_svc.records import StoredDocument

log = logging.getLogger("harag.retriever.store")

SNAPSHOT = "snapshot.bin"
SNAPSHOT_TMP = "snapshot.tmp"
WAL = "wal.log"
LOCK = "LOCK"
SNAPSHOT_CHUNK = 512  # documents per snapshot record: bounds the memory one record needs
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Replacement:
    """All new chunks of one document (none: remove it) and its content hash."""

    document_id: str
    content_hash: str
    chunks: Sequence[StoredDocument]


@dataclass(frozen=True)
class DocumentSummary:
    document_id: str
    title: str
    chunks: int
    content_hash: str


class StoreError(OSError):
    """The data directory cannot be used (locked by another process, corrupt snapshot...)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class DocumentStore:
    def __init__(self, directory: str | os.PathLike[str], snapshot_every: int = 500) -> None:
        self.directory = Path(directory)
        self.snapshot_every = snapshot_every
        self.documents: dict[str, StoredDocument] = {}
        # entry ids of each document, and each document's content hash (when it has one)
        self.groups: dict[str, set[str]] = {}
        self.hashes: dict[str, str] = {}
        self._records_since_snapshot = 0
        self.compactions = 0  # snapshots written by this process (indexes persist beside them)
        self._broken: str | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        try:
            self._load_snapshot()
            self._replay_log()
            self._log_fd = os.open(
                self.directory / WAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
            )
            _fsync_dir(self.directory)  # the log's directory entry must outlive a crash too
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._log_size = os.fstat(self._log_fd).st_size

    # --- writes -----------------------------------------------------------------------------

    def upsert(self, documents: Sequence[StoredDocument]) -> None:
        """Durably replaces/inserts `documents` (one atomic record) before returning."""
        if not documents:
            return
        self._append(records.encode(records.OP_UPSERT, {}, documents))
        for doc in documents:
            self._put(doc)
        self._after_write()

    def delete(self, ids: Iterable[str]) -> list[StoredDocument]:
        """Durably removes the entries that exist; returns them."""
        present = list(dict.fromkeys(i for i in ids if i in self.documents))
        if not present:
            return []
        self._append(records.encode(records.OP_DELETE, {"ids": present}))
        removed = [self._pop(i) for i in present]
        self._after_write()
        return removed

    def replace(self, replacements: Sequence[Replacement]) -> list[StoredDocument]:
        """Durably swaps each document's chunks for its new ones (one record); returns the
        entries removed. The caller ensures no new chunk id belongs to another document."""
        if not replacements:
            return []
        header = {"replace": [{"id": r.document_id, "hash": r.content_hash} for r in replacements]}
        chunks = [chunk for r in replacements for chunk in r.chunks]
        self._append(records.encode(records.OP_REPLACE, header, chunks))
        removed = self._apply_replace(header["replace"], chunks)
        self._after_write()
        return removed

    def remove_documents(self, document_ids: Iterable[str]) -> list[StoredDocument]:
        """Durably removes every entry of the documents that exist; returns the entries."""
        present = [i for i in dict.fromkeys(document_ids) if i in self.groups]
        return self.replace([Replacement(i, "", ()) for i in present])

    def owner(self, entry_id: str) -> str | None:
        """The document an entry id currently belongs to, if stored."""
        doc = self.documents.get(entry_id)
        return doc.document_id if doc is not None else None

    def list_documents(self, after: str, limit: int) -> list[DocumentSummary]:
        """Documents with ids greater than `after`, in id order, at most `limit`."""
        ids = sorted(self.groups)
        start = bisect.bisect_right(ids, after) if after else 0
        return [self.summary(i) for i in ids[start : start + limit]]

    def summary(self, document_id: str) -> DocumentSummary:
        entries = [self.documents[i] for i in self.groups.get(document_id, ())]
        first = min(entries, key=lambda d: (d.chunk.position if d.chunk else 0, d.id), default=None)
        title = first.chunk.title if first is not None and first.chunk is not None else ""
        return DocumentSummary(document_id, title, len(entries), self.hashes.get(document_id, ""))

    # --- in-memory state (also used by replay) ---------------------------------------------

    def _put(self, doc: StoredDocument) -> None:
        old = self.documents.get(doc.id)
        if old is not None:
            self._unlink(old)
        self.documents[doc.id] = doc
        self.groups.setdefault(doc.document_id, set()).add(doc.id)

    def _pop(self, entry_id: str) -> StoredDocument:
        doc = self.documents.pop(entry_id)
        self._unlink(doc)
        return doc

    def _unlink(self, doc: StoredDocument) -> None:
        group = self.groups.get(doc.document_id)
        if group is None:
            return
        group.discard(doc.id)
        if not group:
            del self.groups[doc.document_id]
            self.hashes.pop(doc.document_id, None)

    def _apply_replace(
        self, entries: Sequence[dict[str, str]], chunks: Sequence[StoredDocument]
    ) -> list[StoredDocument]:
        removed: list[StoredDocument] = []
        for entry in entries:
            for entry_id in sorted(self.groups.get(entry["id"], ())):
                removed.append(self._pop(entry_id))
        for chunk in chunks:
            if chunk.id in self.documents:  # only when a caller broke the ownership rule
                removed.append(self._pop(chunk.id))
            self._put(chunk)
        for entry in entries:
            if entry["id"] in self.groups and entry["hash"]:
                self.hashes[entry["id"]] = entry["hash"]
        return removed

    def _append(self, payload: bytes) -> None:
        if self._broken:
            raise StoreError(f"store is read-only after an earlier failure: {self._broken}")
        data = records.frame(payload)
        try:
            _write_all(self._log_fd, data)
            os.fdatasync(self._log_fd)
        except OSError as exc:
            # A partial frame must not stay in the log: appends after it would be unreachable.
            try:
                os.ftruncate(self._log_fd, self._log_size)
                os.fdatasync(self._log_fd)
            except OSError as undo_exc:
                self._broken = f"cannot roll back a failed append: {undo_exc}"
            raise StoreError(f"write-ahead log append failed: {exc}") from exc
        self._log_size += len(data)
        self._records_since_snapshot += 1

    def _after_write(self) -> None:
        if self._records_since_snapshot >= self.snapshot_every:
            try:
                self.compact()
            except OSError as exc:
                # The write itself is durable in the log; compaction retries on a later write.
                log.error("compaction failed", extra={"error": str(exc)})

    def compact(self) -> None:
        """Writes the whole state as a new snapshot, then empties the log."""
        tmp = self.directory / SNAPSHOT_TMP
        docs = list(self.documents.values())
        try:
            with open(tmp, "wb") as out:
                header = {"version": FORMAT_VERSION, "documents": len(docs), "hashes": self.hashes}
                out.write(records.frame(records.encode(records.OP_SNAPSHOT_BEGIN, header)))
                for start in range(0, len(docs), SNAPSHOT_CHUNK):
                    chunk = docs[start : start + SNAPSHOT_CHUNK]
                    out.write(records.frame(records.encode(records.OP_UPSERT, {}, chunk)))
                end = {"documents": len(docs)}
                out.write(records.frame(records.encode(records.OP_SNAPSHOT_END, end)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.directory / SNAPSHOT)
            _fsync_dir(self.directory)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.ftruncate(self._log_fd, 0)
        os.fdatasync(self._log_fd)
        self._log_size = 0
        self._records_since_snapshot = 0
        self.compactions += 1
        log.info("compacted", extra={"documents": len(docs), "disk_bytes": self.disk_bytes()})

    # --- reads ------------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        total = 0
        for name in (SNAPSHOT, WAL):
            try:
                total += (self.directory / name).stat().st_size
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        for fd in (self._log_fd, self._lock_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log_fd = self._lock_fd = -1

    # --- loading ----------------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.directory} is in use by another retriever process") from None
        return fd

    def _load_snapshot(self) -> None:
        (self.directory / SNAPSHOT_TMP).unlink(missing_ok=True)  # an unfinished compaction
        path = self.directory / SNAPSHOT
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        # The snapshot is replaced atomically, so damage here is disk corruption, not a torn
        # write: refuse to start rather than serve (and later compact away) a partial corpus.
        expected: int | None = None
        hashes: dict[str, str] = {}
        complete = False
        try:
            for _, payload in records.read_frames(data):
                record = records.decode(payload)
                if record.op == records.OP_SNAPSHOT_BEGIN:
                    expected = int(record.header["documents"])
                    hashes = record.header.get("hashes", {})
                elif record.op == records.OP_UPSERT:
                    self._apply(record)
                elif record.op == records.OP_SNAPSHOT_END:
                    complete = expected == len(self.documents) == record.header["documents"]
                    # a hash names a stored document; set once its entries are loaded
                    self.hashes = {str(k): str(v) for k, v in hashes.items() if k in self.groups}
                    break
        except (ValueError, KeyError) as exc:
            raise StoreError(f"corrupt snapshot {path}: {exc}") from exc
        if not complete:
            raise StoreError(f"corrupt snapshot {path}: incomplete or wrong document count")

    def _replay_log(self) -> None:
        path = self.directory / WAL
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        good_end = 0
        replayed = 0
        for end, payload in records.read_frames(data):
            try:
                record = records.decode(payload)
            except ValueError as exc:
                # Intact framing but unreadable content is a bug or a newer format, not a
                # torn write: truncating here could destroy acknowledged records after it.
                raise StoreError(f"unreadable record at {path}:{good_end}: {exc}") from exc
            self._apply(record)
            good_end = end
            replayed += 1
        if good_end < len(data):
            self._discard_tail(path, data, good_end)
        self._records_since_snapshot = replayed
        log.info("store loaded", extra={"documents": len(self.documents), "replayed": replayed})

    def _discard_tail(self, path: Path, data: bytes, good_end: int) -> None:
        """Cuts a torn tail off the log so new appends follow the last intact record."""
        # A torn write is the expected cause; the bytes are kept aside in case it was not.
        aside = path.with_name(f"{WAL}.discarded-{time.time_ns()}")
        aside.write_bytes(data[good_end:])
        log.warning(
            "discarding torn write-ahead log tail",
            extra={
                "offset": good_end,
                "discarded_bytes": len(data) - good_end,
                "kept_in": str(aside),
            },
        )
        with open(path, "r+b") as wal:
            wal.truncate(good_end)
            wal.flush()
            os.fsync(wal.fileno())

    def _apply(self, record: records.Record) -> None:
        if record.op == records.OP_UPSERT:
            for doc in record.documents:
                self._put(doc)
        elif record.op == records.OP_DELETE:
            for doc_id in record.header["ids"]:
                if doc_id in self.documents:
                    self._pop(doc_id)
        elif record.op == records.OP_REPLACE:
            self._apply_replace(record.header["replace"], record.documents)
