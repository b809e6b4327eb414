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

from meshes import start_mesh
from processes import LogBook

from chaos import conftest as chaos_conftest
from chaos.runner import (
    BreakerTrips,
    Chaos,
    Traffic,
    missing_documents,
    route_through,
    wait_closed,
)
from chaos.schedule import UPSTREAMS, build
from harag.v1 import common_pb2, gateway_pb2
from harag_cli.corpus import SAMPLE_CORPUS, sample_corpus

SEED = int(os.environ.get("HARAG_CHAOS_SEED", "20240607"))
MIN_QUERIES = 1000
DEADLINE_S = 2.0
WORKERS = 6
PRIMARIES = [u for u in UPSTREAMS if u.endswith("-primary")]
FALLBACKS = [u for u in UPSTREAMS if u.endswith("-fallback")]
RECOVERY_BOUND_S = 10.0  # the breakers' longest open wait (2 s + 20%) plus probes and reconnects
CHAOS_ENV = {
    "HARAG_BREAKER_MINIMUM_CALLS": "5",
    "HARAG_BREAKER_WINDOW_SIZE": "10",
    "HARAG_BREAKER_WAIT_IN_OPEN_S": "0.5",
    "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "2",
    "HARAG_CACHE_TTL_S": "2",
    "HARAG_STALE_TTL_S": "3600",
    "HARAG_COALESCE_ENABLED": "true",
    "HARAG_HEDGE_ENABLED": "true",  # the shared test mesh turns these four off; chaos wants them
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
    trips = BreakerTrips(mesh.control)
    traffic.start(WORKERS, SEED)
    trips.start()
    try:
        await chaos.run(episodes)
        await trips.stop()
        cleared = await chaos.clear_everything(list(UPSTREAMS))
        recovered_s, states = await wait_closed(mesh.control, PRIMARIES, RECOVERY_BOUND_S)
        idle = [n for n in FALLBACKS if states.get(n) != "CLOSED"]
        routed = {n: await route_through(mesh.control, n, RECOVERY_BOUND_S) for n in idle}
        final = await mesh.control.breaker_states()
        await traffic.wait_for(MIN_QUERIES)
    finally:
        await trips.stop()
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
        f"{len(episodes)} fault episodes, {chaos.kills} kills, "
        f"{sum(trips.opened.values())} breaker trips; primaries' breakers CLOSED "
        + (f"{recovered_s:.1f} s" if recovered_s is not None else "NEVER")
        + " after the last fault cleared"
        + "".join(
            f", {name} {'NEVER' if t is None else f'{t:.1f} s'} after it got traffic"
            for name, t in routed.items()
        )
    )
    print(summary)
    chaos_conftest.SUMMARIES.append(summary)
    context = "\n".join(chaos.log)

    assert len(answers) >= MIN_QUERIES
    assert sum(a.degraded for a in ok) > 0 and trips.opened, "the faults had an effect"
    gateway = mesh.supervisor.procs["gateway"]
    assert gateway.returncode is None and mesh.supervisor.restarts["gateway"] == 0, (
        "the gateway crashed"
    )
    assert not [a for a in failed if a.code == "INTERNAL"], f"INTERNAL returned\n{context}"
    assert not failed, f"{len(failed)} queries failed, e.g. {failed[:5]}\nschedule:\n{context}"
    assert not late, f"{len(late)} answers at or after the deadline, e.g. {late[:5]}"
    assert recovered_s is not None, (
        f"primaries' breakers not all CLOSED {RECOVERY_BOUND_S:g} s after the last fault "
        f"cleared (at {cleared - origin:.1f} s): {states}\nschedule:\n{context}"
    )
    assert all(t is not None for t in routed.values()), (
        f"fallback breakers still not CLOSED {RECOVERY_BOUND_S:g} s after getting traffic: "
        f"{routed}\nschedule:\n{context}"
    )
    assert set(final.values()) == {"CLOSED"}, final
    assert sum(mesh.supervisor.restarts.values()) == chaos.kills
    missing = await missing_documents(mesh, documents)
    assert not missing, f"documents lost in the chaos: {missing[:20]}"
