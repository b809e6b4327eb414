"""The feedback database: SQLite (WAL) by default, PostgreSQL when a DSN is configured.

One implementation over DB-API: the SQL is portable (ON CONFLICT, DOUBLE PRECISION) and only
the placeholder differs. Every call runs in a worker thread (asyncio.to_thread) on one
connection behind a lock, so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.feedback.records import (
    AnswerRecord,
    FeedbackReport,
    RatedAnswer,
    RatingSummary,
    StageServed,
)

SQLITE_FILE = "feedback.sqlite3"
T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS answered_queries (
        request_id TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        query TEXT NOT NULL,
        answer TEXT NOT NULL,
        source_ids TEXT NOT NULL,
        stages TEXT NOT NULL,
        degraded INTEGER NOT NULL,
        cached INTEGER NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        tokens TEXT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS answered_queries_created ON answered_queries (created_at)",
    """CREATE TABLE IF NOT EXISTS answer_feedback (
        request_id TEXT PRIMARY KEY REFERENCES answered_queries (request_id) ON DELETE CASCADE,
        rating INTEGER NOT NULL,
        comment TEXT NOT NULL,
        rated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS answer_feedback_rated ON answer_feedback (rated_at)",
)
COLUMNS = (
    "request_id, created_at, query, answer, source_ids, stages, degraded, cached, "
    "latency_ms, tokens, cost_usd"
)


class FeedbackUnavailable(Exception):
    """The feedback database cannot be reached or written."""


def _row(record: AnswerRecord) -> tuple[Any, ...]:
    return (
        record.request_id,
        record.created_at,
        record.query,
        record.answer,
        json.dumps(record.source_ids),
        json.dumps([[s.stage, s.served_by, s.tier] for s in record.stages]),
        int(record.degraded),
        int(record.cached),
        record.latency_ms,
        json.dumps({model: list(pair) for model, pair in record.tokens.items()}),
        record.cost_usd,
    )


def _record(row: Sequence[Any]) -> AnswerRecord:
    tokens = json.loads(row[9])
    return AnswerRecord(
        request_id=row[0],
        created_at=float(row[1]),
        query=row[2],
        answer=row[3],
        source_ids=list(json.loads(row[4])),
        stages=[StageServed(s[0], s[1], int(s[2])) for s in json.loads(row[5])],
        degraded=bool(row[6]),
        cached=bool(row[7]),
        latency_ms=float(row[8]),
        tokens={model: (int(p), int(c)) for model, (p, c) in tokens.items()},
        cost_usd=float(row[10]),
    )


class FeedbackStore:
    """Answered queries and their ratings in one SQL database."""

    def __init__(self, connect: Callable[[], Any], placeholder: str, name: str) -> None:
        self._connect = connect
        self._p = placeholder
        self.name = name  # "sqlite:<path>" or "postgresql", for logs and the report
        self._conn: Any = None
        self._lock = threading.Lock()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._p)

    def _run(self, work: Callable[[Any], T]) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._create(self._conn)
                return work(self._conn)
            except (sqlite3.Error, OSError) as exc:
                raise FeedbackUnavailable(str(exc)) from exc
            except Exception as exc:
                if _is_psycopg_error(exc):
                    self._drop_connection()
                    raise FeedbackUnavailable(str(exc)) from exc
                raise

    def _drop_connection(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = None

    def _create(self, conn: Any) -> None:
        with _transaction(conn):
            for statement in SCHEMA:
                conn.execute(statement)

    async def call(self, work: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._run, work)

    # Each method below is the body run in the worker thread; the async wrappers name them.
    def _insert(self, conn: Any, records: Iterable[AnswerRecord]) -> None:
        rows = [_row(r) for r in records]
        placeholders = ", ".join(["?"] * 11)
        with _transaction(conn):
            cursor = conn.cursor()
            cursor.executemany(
                self._sql(
                    f"INSERT INTO answered_queries ({COLUMNS}) VALUES ({placeholders}) "
                    "ON CONFLICT (request_id) DO NOTHING"
                ),
                rows,
            )

    async def record(self, records: list[AnswerRecord]) -> None:
        await self.call(lambda conn: self._insert(conn, records))

    def _rate(
        self, conn: Any, request_id: str, rating: int, comment: str, now: float, since: float
    ) -> bool:
        with _transaction(conn):
            found = conn.execute(
                self._sql(
                    "SELECT 1 FROM answered_queries WHERE request_id = ? AND created_at >= ?"
                ),
                (request_id, since),
            ).fetchone()
            if found is None:
                return False
            conn.execute(
                self._sql(
                    "INSERT INTO answer_feedback (request_id, rating, comment, rated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET "
                    "rating = excluded.rating, comment = excluded.comment, "
                    "rated_at = excluded.rated_at"
                ),
                (request_id, rating, comment, now),
            )
            return True

    async def rate(
        self, request_id: str, rating: int, comment: str, now: float, since: float
    ) -> bool:
        """Records a rating; False when no answer with that id was kept since `since`."""
        return await self.call(
            lambda conn: self._rate(conn, request_id, rating, comment, now, since)
        )

    def _ratings_since(self, conn: Any, since: float) -> RatingSummary:
        row = conn.execute(
            self._sql("SELECT COUNT(*), AVG(rating) FROM answer_feedback WHERE rated_at >= ?"),
            (since,),
        ).fetchone()
        return RatingSummary(int(row[0]), None if row[1] is None else float(row[1]))

    async def ratings_since(self, since: float) -> RatingSummary:
        return await self.call(lambda conn: self._ratings_since(conn, since))

    def _purge(self, conn: Any, before: float) -> int:
        with _transaction(conn):
            # Ratings first: SQLite enforces the cascade only with foreign_keys on.
            conn.execute(
                self._sql(
                    "DELETE FROM answer_feedback WHERE request_id IN "
                    "(SELECT request_id FROM answered_queries WHERE created_at < ?)"
                ),
                (before,),
            )
            cursor = conn.execute(
                self._sql("DELETE FROM answered_queries WHERE created_at < ?"), (before,)
            )
            return int(cursor.rowcount or 0)

    async def purge(self, before: float) -> int:
        """Deletes answers older than `before` and their ratings; how many answers went."""
        return await self.call(lambda conn: self._purge(conn, before))

    def report(self, limit: int) -> FeedbackReport:
        """The worst-rated answers and the ratings of primary-served vs degraded answers
        (synchronous: the CLI calls it directly)."""
        return self._run(lambda conn: self._report(conn, limit))

    def _report(self, conn: Any, limit: int) -> FeedbackReport:
        rows = conn.execute(
            self._sql(
                f"SELECT {', '.join('q.' + c.strip() for c in COLUMNS.split(','))}, "
                "f.rating, f.comment, f.rated_at FROM answer_feedback f "
                "JOIN answered_queries q ON q.request_id = f.request_id "
                "ORDER BY f.rating ASC, f.rated_at DESC LIMIT ?"
            ),
            (limit,),
        ).fetchall()
        worst = [RatedAnswer(_record(r[:11]), int(r[11]), r[12], float(r[13])) for r in rows]
        groups = {
            bool(degraded): RatingSummary(int(count), float(average))
            for degraded, count, average in conn.execute(
                "SELECT q.degraded, COUNT(*), AVG(f.rating) FROM answer_feedback f "
                "JOIN answered_queries q ON q.request_id = f.request_id GROUP BY q.degraded"
            ).fetchall()
        }
        kept = conn.execute("SELECT COUNT(*) FROM answered_queries").fetchone()[0]
        empty = RatingSummary(0, None)
        return FeedbackReport(worst, groups.get(False, empty), groups.get(True, empty), int(kept))

    def close(self) -> None:
        with self._lock:
            self._drop_connection()


class _transaction:
    """BEGIN/COMMIT (ROLLBACK on error) on an autocommit connection of either driver."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN")

    def __exit__(self, kind: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")


def _is_psycopg_error(exc: Exception) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.Error)


def sqlite_store(state_dir: str) -> FeedbackStore:
    path = Path(state_dir) / SQLITE_FILE

    def connect() -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable up to the last checkpoint
        return conn

    return FeedbackStore(connect, "?", f"sqlite:{path}")


def postgres_store(dsn: str) -> FeedbackStore:
    import psycopg

    def connect() -> Any:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=5)

    return FeedbackStore(connect, "%s", "postgresql")


def open_store(state_dir: str, postgres_dsn: str) -> FeedbackStore:
    return postgres_store(postgres_dsn) if postgres_dsn else sqlite_store(state_dir)
