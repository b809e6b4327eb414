"""Profile the gateway under load with py-spy, and say where its CPU goes.

Starts fresh processes, runs closed-loop load against the gateway, records it with py-spy
for a few seconds, and prints the share of samples per category. Each sample is
attributed to the file of its innermost frame, except that everything in the span export
thread (the batch span processor) counts as export.

    python -m bench.profile                     # default settings (spans recorded, not exported)
    python -m bench.profile --export            # tracing on: spans exported to a collector
    python -m bench.profile --bare              # python -m gateway --bare
    python -m bench.profile --env HARAG_HEDGE_ENABLED=false
    python -m bench.profile --export --process retriever-primary   # a component instead
    python -m bench.profile --concurrency 1 --gil   # where one query's CPU goes

Needs py-spy (in the `bench` extra) and permission to ptrace the gateway (root, or
kernel.yama.ptrace_scope=0). `--raw FILE` keeps py-spy's raw samples (collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench.loadgen import LoadSpec, run_load
from bench.mesh import BenchMesh
from bench.otlp_sink import OtlpSink
from harag_cli.localports import free_port

CATEGORIES = (  # (name, pattern on the innermost frame's file), first match wins
    ("gRPC (grpcio, its Cython core)", r"grpc/|cygrpc"),
    ("OpenTelemetry metrics", r"opentelemetry/(sdk/)?metrics|prometheus"),
    ("OpenTelemetry spans", r"opentelemetry/"),
    ("resilience: hedging", r"gateway/resilience/hedge\.py"),
    ("resilience: everything else", r"gateway/resilience/"),
    ("gateway: pipeline, receipts, telemetry", r"gateway/"),
    ("servicekit (server, rpc telemetry, logs)", r"servicekit/"),
    ("protobuf", r"protobuf|_pb2"),
    ("asyncio event loop", r"asyncio/|selectors\.py"),
    ("other threads (gRPC poller)", r"threading\.py"),
)
EXPORT_THREAD = "span export thread (BatchProcessor: encode + send)"


def categorise(raw: str) -> dict[str, float]:
    """Share of samples per category, from py-spy's raw (collapsed stacks) output.

    The export thread is the batch processor's worker; its samples that only wait for
    spans (innermost frame a `threading` wait) are left out: they use no CPU, and counted
    as export they made the exporter look several times as costly as it is. Handing a
    span to the processor (`BatchProcessor.emit`) runs in the thread that ended the span
    and counts there.
    """
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any(re.match(r"(BatchProcessor|BatchSpanProcessor)\.worker ", f) for f in frames):
            if not re.match(r"(\w+\.)?wait \(.*threading\.py:\d+\)", frames[-1]):
                counts[EXPORT_THREAD] += int(n)
            continue
        match = re.search(r"\((.*?):\d+\)", frames[-1])
        where = match.group(1) if match else frames[-1]
        name = next((c for c, pattern in CATEGORIES if re.search(pattern, where)), "other")
        counts[name] += int(n)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


@contextlib.asynccontextmanager
async def _mesh(export: bool, env: dict[str, str]) -> AsyncIterator[BenchMesh]:
    async with contextlib.AsyncExitStack() as stack:
        mesh_env: dict[str, str] = {}
        if export:
            sink = await stack.enter_async_context(OtlpSink(free_port()))
            mesh_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        yield await stack.enter_async_context(BenchMesh(env=mesh_env, gateway_env=env))


async def profile(args: argparse.Namespace) -> int:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    env = dict(item.split("=", 1) for item in args.env)
    if args.bare:
        env["HARAG_BARE"] = "true"
    tmp = tempfile.TemporaryDirectory(prefix="harag-profile-")
    out = args.raw or Path(tmp.name) / "samples.txt"
    async with _mesh(args.export, env) as mesh:
        spec = LoadSpec(concurrency=args.concurrency, duration_s=args.seconds + 4, warmup_s=0.0)
        load = asyncio.create_task(run_load(mesh.gateway(), spec))
        await asyncio.sleep(2)  # past start-up effects
        record = await asyncio.create_subprocess_exec(
            py_spy, "record", "--duration", str(args.seconds), "--rate", "250", "--full-filenames",
            "--pid", str(mesh.pid(args.process)), "--format", "raw", "--output", str(out),
            *(["--gil"] if args.gil else []),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await record.communicate()
        result = await load
    with tmp:
        if record.returncode != 0 or not out.exists():
            print(f"py-spy failed: {err.decode().strip()}", file=sys.stderr)
            return 1
        print(
            f"{args.process} with {args.concurrency} concurrent queries at the gateway: "
            f"{result.summary.qps:.0f} QPS"
        )
        for name, share in categorise(out.read_text()).items():
            print(f"  {share:6.1%}  {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--export", action="store_true", help="export spans to a collector stand-in")
    p.add_argument("--bare", action="store_true", help="profile python -m gateway --bare")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the gateway")
    p.add_argument("--seconds", type=int, default=8, help="how long py-spy records")
    p.add_argument(
        "--process", default="gateway", help="which process to record, e.g. retriever-primary"
    )
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--raw", type=Path, help="keep py-spy's raw samples in this file")
    p.add_argument(
        "--gil",
        action="store_true",
        help="only samples holding the GIL: CPU work, not waits (use at low concurrency)",
    )
    return asyncio.run(profile(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
