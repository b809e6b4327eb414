"""Reads the trace viewer's query API (for `harag traces` and `harag trace <id>`)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from harag_cli.traceview.receiver import API_PORT
from harag_cli.traceview.store import SpanRecord

DEFAULT_VIEWER = os.environ.get("HARAG_TRACE_VIEWER", f"http://127.0.0.1:{API_PORT}")


class ViewerError(RuntimeError):
    """The viewer is unreachable or answered with an error."""


def _get(url: str, timeout_s: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise ViewerError(str(message)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ViewerError(
            f"no trace viewer at {url.split('/api')[0]} ({exc}); is `harag up` running?"
        ) from None


def recent(viewer: str = DEFAULT_VIEWER, limit: int = 20) -> list[dict[str, Any]]:
    return _get(f"{viewer.rstrip('/')}/api/traces?limit={limit}")["traces"]


def spans(trace_id: str, viewer: str = DEFAULT_VIEWER) -> list[SpanRecord]:
    body = _get(f"{viewer.rstrip('/')}/api/traces/{trace_id}")
    return [SpanRecord.from_json(s) for s in body["spans"]]
