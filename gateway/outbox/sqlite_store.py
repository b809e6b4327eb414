"""The local outbox: one SQLite database in WAL mode in the gateway's state dir.

Every append is committed (synchronous=FULL) before Ingest answers QUEUED, so a queued write
survives a crash of the gateway and of the machine. Delivery is ordered by the rowid; the
lease (a row per retriever) keeps a second process on the same database (`--workers N`) from
delivering the same retriever's writes out of order. Calls run on one thread of their own so
the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, cast

from gateway.outbox.store import (
    MAX_JOB_FAILURES,
    Counts,
    Entry,
    JobRecord,
    Kind,
    Outcome,
    RetrieverCounts,
    Write,
)

T = TypeVar("T")

QUEUED, APPLIED, DEAD = "queued", "applied", "dead"
# Outcomes of applied writes are kept this long for callers still waiting on them, then pruned.
KEEP_OUTCOMES_S = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    retriever TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB,
    job TEXT NOT NULL DEFAULT '',
    documents INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued',
    reply BLOB,
    reason TEXT NOT NULL DEFAULT '',
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (retriever, state, id);
CREATE TABLE IF NOT EXISTS outbox_lease (
    retriever TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_job (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_job_retriever (
    job TEXT NOT NULL,
    retriever TEXT NOT NULL,
    queued INTEGER NOT NULL DEFAULT 0,
    indexed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, retriever)
);
CREATE TABLE IF NOT EXISTS ingest_job_failure (
    job TEXT NOT NULL,
    text TEXT NOT NULL
);
"""

ADD_TO_JOB = (
    "INSERT INTO ingest_job_retriever (job, retriever, queued, indexed, failed) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job, retriever) DO UPDATE SET "
    "queued = queued + excluded.queued, indexed = indexed + excluded.indexed, "
    "failed = failed + excluded.failed"
)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class SqliteOutbox:
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="outbox-sqlite")
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        self._acks = 0

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._db)

    async def append(self, retriever: str, writes: list[Write]) -> list[str]:
        def insert(db: sqlite3.Connection) -> list[str]:
            ids = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for w in writes:
                    cursor = db.execute(
                        "INSERT INTO outbox (retriever, kind, payload, job, documents) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (retriever, w.kind, w.payload, w.job, w.documents),
                    )
                    ids.append(str(cursor.lastrowid))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return ids

        return await self._run(insert)

    async def lease(self, retriever: str, owner: str, ttl_s: float) -> bool:
        def take_lease(db: sqlite3.Connection) -> bool:
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT owner, until FROM outbox_lease WHERE retriever = ?", (retriever,)
                ).fetchone()
                mine = row is None or row[0] == owner or row[1] < now
                if mine:
                    db.execute(
                        "INSERT OR REPLACE INTO outbox_lease (retriever, owner, until) "
                        "VALUES (?, ?, ?)",
                        (retriever, owner, now + ttl_s),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return mine

        return await self._run(take_lease)

    async def take(self, retriever: str, owner: str, count: int) -> list[Entry] | None:
        def select(db: sqlite3.Connection) -> list[Entry]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    "SELECT id, kind, payload, job, documents, deliveries FROM outbox "
                    "WHERE retriever = ? AND state = ? ORDER BY id LIMIT ?",
                    (retriever, QUEUED, count),
                ).fetchall()
                db.executemany(
                    "UPDATE outbox SET deliveries = deliveries + 1 WHERE id = ?",
                    [(r[0],) for r in rows],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return [Entry(str(r[0]), cast(Kind, r[1]), r[2], r[3], r[4], r[5] + 1) for r in rows]

        return await self._run(select)

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return result

        return await self._run(run)

    async def ack(
        self, retriever: str, entry: Entry, reply: bytes, indexed: int, refused: int
    ) -> None:
        self._acks += 1
        prune = self._acks % 200 == 0

        def mark(db: sqlite3.Connection) -> None:
            now = time.time()
            changed = db.execute(
                "UPDATE outbox SET state = ?, reply = ?, payload = NULL, done_at = ? "
                "WHERE id = ? AND state = ?",
                (APPLIED, reply, now, int(entry.id), QUEUED),
            ).rowcount
            if changed and entry.job:  # counted once, even if delivered twice
                db.execute(ADD_TO_JOB, (entry.job, retriever, 0, indexed, refused))
            if prune:
                db.execute(
                    "DELETE FROM outbox WHERE state = ? AND done_at < ?",
                    (APPLIED, now - KEEP_OUTCOMES_S),
                )

        await self._transaction(mark)

    async def dead_letter(self, retriever: str, entry: Entry, reason: str) -> None:
        def mark(db: sqlite3.Connection) -> None:
            # The payload stays: a dead letter is kept for an operator to inspect or replay.
            changed = db.execute(
                "UPDATE outbox SET state = ?, reason = ?, done_at = ? WHERE id = ? AND state = ?",
                (DEAD, reason, time.time(), int(entry.id), QUEUED),
            ).rowcount
            if changed and entry.job:
                db.execute(ADD_TO_JOB, (entry.job, retriever, 0, 0, entry.documents))

        await self._transaction(mark)

    async def create_job(self, job_id: str, accepted: int, lease_s: float) -> None:
        def insert(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute(
                "INSERT INTO ingest_job (id, state, accepted, started, lease_until) "
                "VALUES (?, 'running', ?, ?, ?)",
                (job_id, accepted, now, now + lease_s),
            )

        await self._transaction(insert)

    async def job_progress(
        self,
        job_id: str,
        *,
        embedded: int,
        unchanged: int,
        failed: int,
        failures: list[str],
        queued: dict[str, int],
        lease_s: float,
    ) -> None:
        def add(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE ingest_job SET embedded = embedded + ?, unchanged = unchanged + ?, "
                "failed = failed + ?, lease_until = ? WHERE id = ?",
                (embedded, unchanged, failed, time.time() + lease_s, job_id),
            )
            for retriever, n in queued.items():
                db.execute(ADD_TO_JOB, (job_id, retriever, n, 0, 0))
            kept = db.execute(
                "SELECT COUNT(*) FROM ingest_job_failure WHERE job = ?", (job_id,)
            ).fetchone()[0]
            db.executemany(
                "INSERT INTO ingest_job_failure (job, text) VALUES (?, ?)",
                [(job_id, f) for f in failures[: max(0, MAX_JOB_FAILURES - kept)]],
            )

        await self._transaction(add)

    async def job_state(self, job_id: str, state: str) -> None:
        await self._run(
            lambda db: db.execute("UPDATE ingest_job SET state = ? WHERE id = ?", (state, job_id))
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        def read(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(
                "SELECT state, accepted, embedded, unchanged, failed, started, lease_until "
                "FROM ingest_job WHERE id = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            retrievers = {
                r[0]: RetrieverCounts(r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT retriever, queued, indexed, failed FROM ingest_job_retriever "
                    "WHERE job = ? ORDER BY retriever",
                    (job_id,),
                )
            }
            failures = [
                r[0]
                for r in db.execute(
                    "SELECT text FROM ingest_job_failure WHERE job = ? ORDER BY rowid", (job_id,)
                )
            ]
            return JobRecord(
                job_id,
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6] >= time.time(),
                retrievers,
                failures,
            )

        return await self._run(read)

    async def outcomes(self, retriever: str, ids: list[str]) -> dict[str, Outcome]:
        def select(db: sqlite3.Connection) -> dict[str, Outcome]:
            found: dict[str, Outcome] = {}
            for start in range(0, len(ids), 500):
                part = [int(i) for i in ids[start : start + 500]]
                marks = ",".join("?" * len(part))
                for row in db.execute(
                    f"SELECT id, state, reply, reason FROM outbox WHERE id IN ({marks}) "
                    "AND state != ?",
                    (*part, QUEUED),
                ):
                    found[str(row[0])] = Outcome(row[1] == APPLIED, row[2] or b"", row[3])
            return found

        return await self._run(select)

    async def counts(self, retriever: str) -> Counts:
        def count(db: sqlite3.Connection) -> Counts:
            rows = dict(
                db.execute(
                    "SELECT state, COUNT(*) FROM outbox WHERE retriever = ? AND state IN (?, ?) "
                    "GROUP BY state",
                    (retriever, QUEUED, DEAD),
                ).fetchall()
            )
            return Counts(rows.get(QUEUED, 0), rows.get(DEAD, 0))

        return await self._run(count)

    async def close(self) -> None:
        await self._run(lambda db: db.close())
        self._thread.shutdown(wait=False)
