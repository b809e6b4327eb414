"""Settings of the write outbox and ingest jobs (`outbox_*`, `ingest_job_*`): apart from
the outbox itself so that loading the configuration imports neither SQLite nor Redis."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.settings import RuleViolation, check_fields, setting


@dataclass(frozen=True)
class OutboxConfig:
    """Where retriever writes wait until they are acknowledged, and how they are delivered.

    With `redis_url` set the outbox is a Redis Stream per retriever shared by every gateway
    replica; without it, a SQLite database (WAL mode) in `outbox_state_dir`."""

    state_dir: str = setting(
        "var/gateway",
        "outbox_state_dir",
        "Directory of the local outbox and ingest-job database (outbox.sqlite3), used when "
        "redis_url is empty; it must survive a gateway restart for queued writes to survive.",
        form="a directory path",
    )
    max_deliveries: int = setting(
        5,
        "outbox_max_deliveries",
        "Failed deliveries of one write (the retriever refused the request, or a gateway died "
        "while delivering it) after which it moves to the dead-letter stream. A retriever "
        "that is down or slow does not count: its writes wait.",
        unit="deliveries",
        minimum=1,
        maximum=1000,
    )
    lease_s: float = setting(
        5.0,
        "outbox_lease_s",
        "One gateway at a time delivers a retriever's writes, so they apply in order; it holds "
        "a lease this long and renews it. A crashed gateway's pending writes are claimed by "
        "another once they have been idle this long (XAUTOCLAIM min idle time).",
        unit="s",
        minimum=0.2,
        maximum=600,
    )
    max_backoff_s: float = setting(
        2.0,
        "outbox_max_backoff_s",
        "Longest wait between delivery attempts while a retriever is down (doubling from "
        "0.05 s); a recovered retriever gets its queued writes at most this late.",
        unit="s",
        minimum=0.05,
        maximum=60,
    )
    ingest_deadline_s: float = setting(
        60.0,
        "ingest_default_deadline_s",
        "Deadline of an Ingest or DeleteDocuments call whose caller set none: no write starts "
        "after it, and what is not acknowledged by then is reported QUEUED.",
        unit="s",
        minimum=0.5,
        maximum=3600,
    )
    job_max_documents: int = setting(
        1_000_000,
        "ingest_job_max_documents",
        "Most documents one ingest job takes.",
        unit="documents",
        minimum=1,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.state_dir.strip():
            raise RuleViolation("{state_dir} must not be empty")
