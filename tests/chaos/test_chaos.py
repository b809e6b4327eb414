"""The seeded chaos suite: >= 1,000 queries against a real mesh while faults come and go.

Faults: error rates at several codes, latency, hangs, "down", and SIGKILL of a component
process (the supervisor restarts it, as `harag up` does). Every tier of every component
is hit, sometimes two at once (see chaos/schedule.py). Set HARAG_CHAOS_SEED to replay
another schedule; the summary line names the seed it ran.
"""

from __future__ import annotations

import json
import os
import time

from conftest import LogBook, start_mesh

from chaos import conftest as chaos_conftest
from chaos.runner import Chaos, Traffic, missing_documents, wait_all_closed
from chaos.schedule import UPSTREAMS, build
from harag.cli.corpus import SAMPLE_CORPUS, sample_corpus
from harag.v1 import common_pb2, gateway_pb2

SEED = int(os.environ.get("HARAG_CHAOS_SEED", "20240607"))
MIN_QUERIES = 1000
DEADLINE_S = 2.0
WORKERS = 6
RECOVERY_BOUND_S = 10.0  # the breakers' longest open wait (2 s + 20%) plus probes and reconnects
CHAOS_ENV = {
    "HARAG_BREAKER_MINIMUM_CALLS": "5",
    "HARAG_BREAKER_WINDOW_SIZE": "10",
    "HARAG_BREAKER_WAIT_IN_OPEN_S": "0.5",
    "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "2",
    "HARAG_CACHE_TTL_S": "2",
    "HARAG_STALE_TTL_S": "3600",
    "HARAG_COALESCE_ENABLED": "true",
}


def pre_chaos_documents() -> list[common_pb2.Document]:
    """The sample corpus plus synthetic documents; each has a unique metadata "source"."""
    extra = [
        common_pb2.Document(
            id=f"chaos-{i}",
            text=f"Chaos document {i}: written before the faults, it must survive them. "
            f"Token {i * 7919 % 1000} marks it.",
            metadata={"source": f"chaos-{i}"},
        )
        for i in range(60)
    ]
    return [*sample_corpus(), *extra]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")


async def test_chaos(tmp_path):
    logs = LogBook()
    mesh = await start_mesh(tmp_path, logs, env=CHAOS_ENV)
    try:
        await run_chaos(mesh)
    finally:
        await mesh.channel.close()
        await mesh.supervisor.stop()


async def run_chaos(mesh) -> None:
    documents = pre_chaos_documents()
    reply = await mesh.gateway.Ingest(gateway_pb2.IngestRequest(documents=documents), timeout=120)
    assert reply.failed == 0 and all(not r.missing for r in reply.results)
    questions = [q["question"] for q in json.loads((SAMPLE_CORPUS / "questions.json").read_text())]
    episodes = build(SEED)

    origin = time.monotonic()
    traffic = Traffic(mesh.gateway, questions, DEADLINE_S, origin)
    chaos = Chaos(mesh, origin)
    traffic.start(WORKERS, SEED)
    try:
        await chaos.run(episodes)
        cleared = await chaos.clear_everything(list(UPSTREAMS))
        recovered_s, states = await wait_all_closed(mesh.gateway_address, RECOVERY_BOUND_S)
        await traffic.wait_for(MIN_QUERIES)
    finally:
        await traffic.stop()
    answers = traffic.answers
    took = time.monotonic() - origin
    failed = [a for a in answers if a.code != "OK"]
    late = [a for a in answers if a.latency_s >= DEADLINE_S]
    ok = [a for a in answers if a.code == "OK"]
    summary = (
        f"chaos seed={SEED}: {len(answers)} queries in {took:.0f} s, "
        f"{len(ok) / len(answers):.1%} answered, "
        f"{sum(a.degraded for a in ok) / max(len(ok), 1):.1%} degraded, "
        f"p99 {p99([a.latency_s for a in ok]) * 1000:.0f} ms (deadline {DEADLINE_S * 1000:.0f}); "
        f"{len(episodes)} fault episodes, {chaos.kills} kills; breakers all CLOSED "
        + (
            f"{recovered_s:.1f} s after the last fault cleared"
            if recovered_s is not None
            else "NEVER"
        )
    )
    print(summary)
    chaos_conftest.SUMMARIES.append(summary)
    context = "\n".join(chaos.log)

    assert len(answers) >= MIN_QUERIES
    gateway = mesh.supervisor.procs["gateway"]
    assert gateway.returncode is None and mesh.supervisor.restarts["gateway"] == 0, (
        "the gateway crashed"
    )
    assert not [a for a in failed if a.code == "INTERNAL"], f"INTERNAL returned\n{context}"
    assert not failed, f"{len(failed)} queries failed, e.g. {failed[:5]}\nschedule:\n{context}"
    assert not late, f"{len(late)} answers at or after the deadline, e.g. {late[:5]}"
    assert recovered_s is not None, (
        f"breakers not all CLOSED {RECOVERY_BOUND_S:g} s after the last fault cleared "
        f"(at {cleared - origin:.1f} s): {states}\nschedule:\n{context}"
    )
    assert sum(mesh.supervisor.restarts.values()) == chaos.kills
    missing = await missing_documents(mesh, documents)
    assert not missing, f"documents lost in the chaos: {missing[:20]}"
