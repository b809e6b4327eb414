"""`harag traces`, `harag trace <id>`, and the trace viewer `harag up` starts for the mesh."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping

from harag_cli.traceview import client
from harag_cli.traceview.receiver import API_PORT, OTLP_PORT, TraceViewer
from harag_cli.traceview.waterfall import render_list, render_trace

# Export spans every half second instead of every five, so `harag trace` right after
# `harag query` finds the whole trace (only when the operator has not chosen a value).
VIEWER_ENV_DEFAULTS = {"OTEL_BSP_SCHEDULE_DELAY": "500"}


async def start_viewer_for_mesh(
    enabled: bool,
    environ: Mapping[str, str] = os.environ,
    otlp_port: int = OTLP_PORT,
    api_port: int = API_PORT,
) -> tuple[TraceViewer | None, dict[str, str]]:
    """Starts the viewer unless disabled or OTLP already goes elsewhere.

    Returns the viewer (or None) and the env every mesh process should get.
    """
    if not enabled:
        return None, {}
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        print("harag up: OTEL_EXPORTER_OTLP_ENDPOINT is set; not starting the trace viewer")
        return None, {}
    viewer = TraceViewer(otlp_port=otlp_port, api_port=api_port)
    try:
        await viewer.start()
    except OSError as exc:
        print(f"harag up: trace viewer not started: {exc}", file=sys.stderr)
        return None, {}
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": viewer.otlp_endpoint}
    env.update({k: v for k, v in VIEWER_ENV_DEFAULTS.items() if k not in environ})
    return viewer, env


async def traces(args: argparse.Namespace) -> int:
    try:
        summaries = client.recent(viewer_url(args.viewer, args.port_offset), args.limit)
    except client.ViewerError as exc:
        print(f"harag traces: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summaries, indent=2) if args.json else render_list(summaries))
    return 0


async def trace(args: argparse.Namespace) -> int:
    try:
        spans = client.spans(args.trace_id, viewer_url(args.viewer, args.port_offset))
    except client.ViewerError as exc:
        print(f"harag trace: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([s.to_json() for s in spans], indent=2))
    else:
        print(render_trace(spans, args.width or shutil.get_terminal_size((140, 40)).columns))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("traces", help="list recent traces (from the built-in trace viewer)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=traces)

    p = sub.add_parser("trace", help="show one trace as a waterfall tree")
    p.add_argument("trace_id", help="trace id, or a unique prefix of one")
    p.add_argument("--width", type=int, help="terminal width (default: detected)")
    p.add_argument("--json", action="store_true", help="print the spans as JSON")
    p.set_defaults(func=trace)

    for name in ("traces", "trace"):
        sub.choices[name].add_argument(
            "--viewer", help="trace viewer query API (default: $HARAG_TRACE_VIEWER or local)"
        )
        sub.choices[name].add_argument(
            "--port-offset",
            type=int,
            help="the viewer of the mesh started with `harag up --port-offset N`",
        )


def viewer_url(viewer: str | None, port_offset: int | None) -> str:
    """`--viewer`, else the viewer `harag up --port-offset N` started, else the default."""
    if viewer:
        return viewer
    if port_offset is None:
        return client.DEFAULT_VIEWER
    return f"http://127.0.0.1:{API_PORT + port_offset}"
