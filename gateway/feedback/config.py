"""Settings of the feedback loop (`feedback_*`) and the price table: apart from the store so
that loading the configuration imports neither SQLite nor psycopg."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.feedback.prices import price_table_problem
from servicekit.settings import RuleViolation, check_fields, setting


def _dsn_problem(value: str) -> str | None:
    if value and not value.startswith(("postgresql://", "postgres://")) and "=" not in value:
        return "must be a postgresql:// URL or a libpq key=value string"
    return None


@dataclass(frozen=True)
class FeedbackConfig:
    """Where answered queries and their ratings are kept, for how long, and what answers cost.

    SQLite (WAL) in `feedback_state_dir` by default; PostgreSQL when `feedback_postgres_dsn`
    is set, so every gateway replica records into (and `harag feedback report` reads) one
    database."""

    state_dir: str = setting(
        "var/gateway",
        "feedback_state_dir",
        "Directory of the local feedback database (feedback.sqlite3), used when "
        "feedback_postgres_dsn is empty.",
        form="a directory path",
    )
    postgres_dsn: str = setting(
        "",
        "feedback_postgres_dsn",
        "PostgreSQL for answered queries and feedback, e.g. "
        "postgresql://harag@db:5432/harag; empty = SQLite in feedback_state_dir.",
        validate=_dsn_problem,
        form="empty, or a postgresql:// URL or libpq key=value string",
    )
    retention_s: float = setting(
        7 * 24 * 3600.0,
        "feedback_retention_s",
        "How long an answered query is kept (and can be rated); older ones and their "
        "ratings are deleted.",
        unit="s",
        minimum=60,
        maximum=366 * 24 * 3600,
    )
    max_comment_chars: int = setting(
        2000,
        "feedback_max_comment_chars",
        "Longest comment SubmitFeedback takes; longer ones get INVALID_ARGUMENT.",
        unit="characters",
        minimum=0,
        maximum=100_000,
    )
    queue_size: int = setting(
        1000,
        "feedback_queue_size",
        "Answered queries waiting to be written; when the database falls this far behind, "
        "further records are dropped (counted in harag_gateway_feedback_records_dropped_total) "
        "rather than slow answers.",
        unit="records",
        minimum=1,
        maximum=1_000_000,
    )
    alert_min_ratings: int = setting(
        10,
        "feedback_alert_min_ratings",
        "Ratings in the last hour needed before a low average logs the quality alert.",
        unit="ratings",
        minimum=1,
    )
    alert_below: float = setting(
        3.5,
        "feedback_alert_below_rating",
        "Average rating over the last hour below which the quality alert is logged.",
        unit="rating",
        minimum=1,
        maximum=5,
    )
    price_table: str = setting(
        "",
        "price_table",
        "Prices per model for cost per query: inline JSON or the path of a YAML/JSON file "
        'mapping model id to {"prompt_per_1k": USD, "completion_per_1k": USD}; models not '
        "listed cost nothing.",
        validate=price_table_problem,
        form="empty, inline JSON, or a file path",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.state_dir.strip():
            raise RuleViolation("{state_dir} must not be empty")
