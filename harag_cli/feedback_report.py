"""`harag feedback report`: the worst-rated answers and what degradation costs in rating.

It reads the feedback database directly, found from the gateway's own settings
(feedback_postgres_dsn, else feedback_state_dir; env or HARAG_CONFIG): a report is an
operator's read-only query, and going through the database needs no new admin RPC, no
paging protocol and works while every gateway is down. With PostgreSQL it covers every
replica; with SQLite, the gateway whose state directory it is given.
"""

from __future__ import annotations

import time
from pathlib import Path

from gateway.feedback.config import FeedbackConfig
from gateway.feedback.records import FeedbackReport, RatingSummary
from gateway.feedback.store import SQLITE_FILE, FeedbackStore, open_store
from servicekit.config import load_config

UP_STATE_DIR = "var/data/gateway"  # where `harag up` (default --data-dir) keeps it


class NoFeedbackDatabase(Exception):
    """There is no feedback database where the settings point."""


def report_store(state_dir: str | None, dsn: str | None) -> FeedbackStore:
    """The store the report reads: flags, else the gateway settings, else `harag up`'s."""
    loaded = load_config(
        FeedbackConfig,
        overrides={"feedback_state_dir": state_dir, "feedback_postgres_dsn": dsn},
    )
    cfg = loaded.config
    directory = cfg.state_dir
    if state_dir is None and loaded.resolved.sources["feedback_state_dir"] == "default":
        directory = UP_STATE_DIR
    if not cfg.postgres_dsn and not (Path(directory) / SQLITE_FILE).exists():
        raise NoFeedbackDatabase(
            f"no feedback database at {Path(directory) / SQLITE_FILE} "
            "(set --state-dir, $HARAG_FEEDBACK_STATE_DIR or --dsn)"
        )
    return open_store(directory, cfg.postgres_dsn)


def _summary(name: str, summary: RatingSummary) -> str:
    average = "-" if summary.average is None else f"{summary.average:.2f}"
    return f"{name:<22} {average:>7}  ({summary.count} ratings)"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def render_report(report: FeedbackReport, width: int = 100) -> str:
    lines = [
        "average rating",
        _summary("  primary-served", report.primary),
        _summary("  degraded", report.degraded),
    ]
    p, d = report.primary.average, report.degraded.average
    if p is not None and d is not None:
        lines.append(
            f"  degraded answers rate {abs(p - d):.2f} stars {'lower' if p >= d else 'higher'}"
        )
    lines.append(f"answers kept: {report.answers_kept}")
    lines.append("")
    lines.append(f"worst-rated answers ({len(report.worst)})")
    for rated in report.worst:
        r = rated.record
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.created_at))
        tiers = ", ".join(
            f"{s.stage.removeprefix('STAGE_').lower()}={s.served_by}" for s in r.stages
        )
        lines.append(
            f"- {rated.rating}/5  {r.request_id}  {when} UTC  "
            f"{'DEGRADED' if r.degraded else 'primary'}{'  cached' if r.cached else ''}  "
            f"{r.latency_ms:.0f} ms  ${r.cost_usd:.6f}"
        )
        lines.append(f"    query:   {_clip(r.query, width)}")
        lines.append(f"    answer:  {_clip(r.answer, width)}")
        lines.append(f"    served:  {tiers}")
        if r.source_ids:
            lines.append(f"    sources: {', '.join(r.source_ids)}")
        if rated.comment:
            lines.append(f"    comment: {_clip(rated.comment, width)}")
    return "\n".join(lines)
