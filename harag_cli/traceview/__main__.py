"""`python -m harag_cli.traceview`: run the trace viewer alone (e.g. next to a mesh run elsewhere).

Point services at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4319, then use
`harag traces` and `harag trace <id>`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from harag_cli.traceview.receiver import API_PORT, OTLP_PORT, TraceViewer
from harag_cli.traceview.store import TraceStore


async def serve(args: argparse.Namespace) -> int:
    viewer = TraceViewer(TraceStore(args.max_traces), args.host, args.otlp_port, args.api_port)
    try:
        await viewer.start()
    except OSError as exc:
        print(f"trace viewer: {exc}", file=sys.stderr)
        return 1
    print(
        f"trace viewer: OTLP/gRPC on {viewer.otlp_endpoint}, query API on {viewer.api_url}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await viewer.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harag_cli.traceview", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--otlp-port", type=int, default=OTLP_PORT)
    parser.add_argument("--api-port", type=int, default=API_PORT)
    parser.add_argument("--max-traces", type=int, default=2000)
    return asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
