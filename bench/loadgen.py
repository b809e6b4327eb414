"""Async gRPC load generator for the gateway's Query RPC.

Closed loop (default): `concurrency` workers, each sending its next query as soon as the
previous one returns (after the RetryInfo delay when it was shed, as a well-behaved client
does; a worker that ignored it would only spin on rejections). Open loop (`rate`): queries
are due at a fixed rate whatever the replies do; latency counts from when a query was *due*,
not when it was sent, so a client that falls behind cannot hide the server's queueing (no
coordinated omission).

Queries come from the sample corpus's questions, made unique with a counter by default so
that the answer cache and coalescing never help: every query runs the whole pipeline.

    python -m bench.loadgen --addr 127.0.0.1:50051 --concurrency 8 --duration 10
    python -m bench.loadgen --rate 200 --duration 15 --name overload
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.report import RESULTS, markdown_table, write_json, write_markdown
from bench.stats import Sample, Summary, summarise
from harag.errors import error_from_rpc
from harag.v1 import gateway_pb2, gateway_pb2_grpc
from harag_cli.corpus import SAMPLE_CORPUS

CLIENT_OVERLOAD = "CLIENT_OVERLOAD"  # open loop: too many queries outstanding to send more
CLIENT_ERROR = "CLIENT_ERROR"  # anything that is not a gRPC status (a bug in the client)


def corpus_questions() -> list[str]:
    rows = json.loads((SAMPLE_CORPUS / "questions.json").read_text())
    return [row["question"] for row in rows]


@dataclass(frozen=True)
class LoadSpec:
    concurrency: int = 8  # closed loop: workers; open loop: ignored (see max_outstanding)
    duration_s: float = 10.0  # measured part
    warmup_s: float = 2.0  # run first, not measured
    rate: float | None = None  # open loop target QPS
    deadline_s: float = 5.0  # per-query gRPC deadline
    unique: bool = True  # suffix a counter so no query repeats (no cache/coalescing help)
    max_outstanding: int = 5000  # open loop: beyond this, queries are counted CLIENT_OVERLOAD


@dataclass
class LoadResult:
    spec: LoadSpec
    samples: list[Sample]  # every query, warm-up included (due_s from the start)
    summary: Summary  # measured part only
    extra: dict[str, object] = field(default_factory=dict)

    def measured(self) -> list[Sample]:
        return [s for s in self.samples if s.due_s >= self.spec.warmup_s]


def sample_of(
    reply: gateway_pb2.QueryResponse, due_s: float, latency_s: float, lag_s: float = 0.0
) -> Sample:
    stages = reply.stages
    return Sample(
        due_s=due_s,
        latency_s=latency_s,
        lag_s=lag_s,
        code="OK",
        degraded=reply.degraded,
        tiers=tuple(s.tier for s in stages),
        local=tuple(s.served_by.startswith("local:") or s.served_by == "cache" for s in stages),
        attempts=sum(len(s.attempts) for s in stages),
    )


_UNIQUE = itertools.count()  # shared by every run, so no two runs send the same query


class QuerySource:
    """Round-robin over questions; unique ones get a counter and a per-process nonce so their
    cache keys differ from every query sent before, in this run or an earlier one."""

    _nonce = uuid.uuid4().hex[:8]

    def __init__(self, questions: Sequence[str], unique: bool) -> None:
        self._questions = list(questions) or ["What is retrieval-augmented generation?"]
        self._unique = unique
        self._counter = itertools.count()

    def next(self) -> str:
        question = self._questions[next(self._counter) % len(self._questions)]
        if not self._unique:
            return question
        return f"{question} (load query {self._nonce}-{next(_UNIQUE)})"


def _retry(error: grpc.aio.AioRpcError) -> float:
    """The delay the server's RetryInfo asks for (0 when it sent none)."""
    return error_from_rpc(error).retry_delay_s or 0.0


async def _one(
    stub: gateway_pb2_grpc.RagGatewayServiceStub,
    query: str,
    due: float,
    origin: float,
    deadline_s: float,
) -> Sample:
    lag = time.perf_counter() - due
    try:
        reply = await stub.Query(gateway_pb2.QueryRequest(query=query), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        latency = time.perf_counter() - due
        return Sample(due - origin, latency, exc.code().name, lag_s=lag, retry_after_s=_retry(exc))
    except Exception:  # a client-side bug must show in the results, not kill the run
        return Sample(due - origin, time.perf_counter() - due, CLIENT_ERROR, lag_s=lag)
    return sample_of(reply, due - origin, time.perf_counter() - due, lag)


async def run_load(
    stub: gateway_pb2_grpc.RagGatewayServiceStub,
    spec: LoadSpec,
    questions: Sequence[str] | None = None,
    on_sample: Callable[[Sample], None] | None = None,
) -> LoadResult:
    """Runs warm-up plus the measured duration; returns every sample and the summary."""
    source = QuerySource(questions if questions is not None else corpus_questions(), spec.unique)
    samples: list[Sample] = []
    origin = time.perf_counter()
    end = origin + spec.warmup_s + spec.duration_s

    def keep(sample: Sample) -> None:
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)

    if spec.rate is None:

        async def worker() -> None:
            while (now := time.perf_counter()) < end:
                sample = await _one(stub, source.next(), now, origin, spec.deadline_s)
                keep(sample)
                if sample.retry_after_s:
                    await asyncio.sleep(min(sample.retry_after_s, end - time.perf_counter()))

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    else:
        outstanding: set[asyncio.Task[None]] = set()

        async def fire(due: float) -> None:
            keep(await _one(stub, source.next(), due, origin, spec.deadline_s))

        interval = 1.0 / spec.rate
        for n in itertools.count():
            due = origin + n * interval
            if due >= end:
                break
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            if len(outstanding) >= spec.max_outstanding:
                keep(Sample(due - origin, 0.0, CLIENT_OVERLOAD))
                continue
            task = asyncio.create_task(fire(due))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
        if outstanding:
            await asyncio.gather(*outstanding)
    measured = [s for s in samples if s.due_s >= spec.warmup_s]
    return LoadResult(spec, samples, summarise(measured, spec.duration_s))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--addr", default="127.0.0.1:50051", help="gateway host:port")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--rate", type=float, help="open loop: target queries per second")
    p.add_argument("--deadline", type=float, default=5.0, help="per-query deadline, seconds")
    p.add_argument("--repeat", action="store_true", help="repeat questions (cache may answer)")
    p.add_argument("--name", default="loadgen", help="results file name (without extension)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    return p


async def _main(args: argparse.Namespace) -> int:
    spec = LoadSpec(
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        rate=args.rate,
        deadline_s=args.deadline,
        unique=not args.repeat,
    )
    async with grpc.aio.insecure_channel(args.addr) as channel:
        result = await run_load(gateway_pb2_grpc.RagGatewayServiceStub(channel), spec)
    row = {"run": args.name, **result.summary.as_dict()}
    write_json(args.out / f"{args.name}.json", {"spec": spec.__dict__, "summary": row})
    table = markdown_table([row])
    write_markdown(args.out / f"{args.name}.md", f"# {args.name}\n\n{table}\n")
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
