"""Settings of the status page the gateway serves on its HTTP port (beside /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.settings import check_fields, setting


def _http_url(text: str) -> str | None:
    if text and not text.startswith(("http://", "https://")):
        return "must be empty or an http:// or https:// URL"
    return None


@dataclass(frozen=True)
class StatusPageConfig:
    """The live status page: /status, /status.json, /status/events, breaker actions."""

    enabled: bool = setting(
        True,
        "status_page_enabled",
        "Serve the status page on the HTTP port beside /metrics (false: /metrics only).",
    )
    window_s: int = setting(
        300,
        "status_page_window_s",
        "The page's shares (tiers per stage, degraded, shed, cache hits) cover the queries of "
        "the last this many seconds.",
        unit="s",
        minimum=10,
        maximum=3600,
    )
    recent_degraded: int = setting(
        20,
        "status_page_recent_degraded",
        "Degraded answers listed on the page with their receipts, newest first.",
        unit="queries",
        minimum=1,
        maximum=1000,
    )
    push_interval_s: float = setting(
        1.0,
        "status_page_push_interval_s",
        "How often the page's event stream sends a fresh snapshot (a breaker transition is "
        "sent at once).",
        unit="s",
        minimum=0.1,
        maximum=60,
    )
    jaeger_url: str = setting(
        "",
        "status_page_jaeger_url",
        "Jaeger UI base URL; degraded queries link to <url>/trace/<trace id>. Empty: link to "
        "the built-in trace viewer when status_page_trace_viewer_url is set.",
        unit="URL",
        validate=_http_url,
    )
    trace_viewer_url: str = setting(
        "",
        "status_page_trace_viewer_url",
        "The built-in trace viewer (`harag up` sets it); links go to <url>/traces/<trace id> "
        "when no Jaeger URL is set.",
        unit="URL",
        validate=_http_url,
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def trace_link(self, trace_id: str) -> str:
        """Where an operator reads this trace ("" when no viewer is configured or no trace)."""
        if not trace_id:
            return ""
        if self.jaeger_url:
            return f"{self.jaeger_url.rstrip('/')}/trace/{trace_id}"
        if self.trace_viewer_url:
            return f"{self.trace_viewer_url.rstrip('/')}/traces/{trace_id}"
        return ""
