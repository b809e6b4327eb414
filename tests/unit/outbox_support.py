"""A real local outbox (SQLite in a temporary directory) with its delivery loops running,
for unit tests of ingest and delete over fake retriever stubs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.config import IngestConfig
from gateway.outbox.config import OutboxConfig
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.sqlite_store import SqliteOutbox
from gateway.upstreams import Upstreams


@asynccontextmanager
async def delivering(
    upstreams: Upstreams, ingest: IngestConfig | None = None, **settings: object
) -> AsyncIterator[OutboxDelivery]:
    directory = tempfile.mkdtemp(prefix="outbox-")
    cfg = OutboxConfig(state_dir=directory, max_backoff_s=0.05, **settings)  # type: ignore[arg-type]
    outbox = SqliteOutbox(Path(directory) / "outbox.sqlite3")
    delivery = OutboxDelivery(outbox, upstreams.chains["retriever"], cfg, ingest or IngestConfig())
    delivery.start()
    try:
        yield delivery
    finally:
        await delivery.stop()
        await outbox.close()
        shutil.rmtree(directory, ignore_errors=True)
