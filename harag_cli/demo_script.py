"""The demo's script: six phases, the faults each one injects, and the questions it asks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from harag.v1 import fault_injection_pb2
from harag_cli.corpus import SAMPLE_CORPUS

Fault = fault_injection_pb2.Fault
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


@dataclass(frozen=True)
class Phase:
    number: int
    title: str
    explain: str
    faults: Mapping[str, fault_injection_pb2.Fault] = field(default_factory=dict)
    questions: tuple[str, ...] = ()
    wait_for_recovery: bool = False  # stay until every breaker is CLOSED again
    until_open: str | None = None  # keep asking until this upstream's breaker opens
    short: str = ""  # title in the summary table


def describe(fault: fault_injection_pb2.Fault) -> str:
    """A fault in a few words: "down", "hang", "50% UNAVAILABLE", "+300 ms"."""
    parts = []
    if fault.down:
        parts.append("down")
    if fault.hang:
        parts.append("hang")
    if fault.error_rate:
        code = grpc.StatusCode.UNAVAILABLE
        for candidate in grpc.StatusCode:
            if candidate.value[0] == (fault.error_code or UNAVAILABLE):
                code = candidate
        parts.append(f"{fault.error_rate:.0%} {code.name}")
    latency_ms = fault.latency.ToMilliseconds()
    if latency_ms:
        parts.append(f"+{latency_ms} ms")
    return ", ".join(parts) or "none"


def questions() -> list[str]:
    rows = json.loads((SAMPLE_CORPUS / "questions.json").read_text())
    return [row["question"] for row in rows]


def phases(per_phase: int) -> list[Phase]:
    """The six phases; each asks `per_phase` questions (phase 5 repeats one from phase 1)."""
    pool = questions()

    def take(start: int) -> tuple[str, ...]:
        return tuple(pool[(start + i) % len(pool)] for i in range(per_phase))

    first = take(0)
    return [
        Phase(
            1,
            "Healthy",
            "Every primary serves its stage (tier 0); every breaker is CLOSED.",
            questions=first,
            short="healthy",
        ),
        Phase(
            2,
            "embedder-primary flaky: 50% of calls fail UNAVAILABLE",
            "UNAVAILABLE is retryable: the gateway retries with jittered backoff, within a "
            "retry budget. Most queries still embed on the primary; a few fall back.",
            {"embedder-primary": Fault(error_rate=0.5, error_code=UNAVAILABLE)},
            take(per_phase),
            short="embedder-primary 50% errors",
        ),
        Phase(
            3,
            "embedder-primary down",
            "The primary reports NOT_SERVING through grpc.health.v1, so the gateway skips it "
            "without a call; embedder-fallback embeds in its own vector space and retrieval "
            "searches that space.",
            {"embedder-primary": Fault(down=True)},
            take(2 * per_phase),
            short="embedder-primary down",
        ),
        Phase(
            4,
            "retriever-primary hanging",
            "Searches never return. Hedging sends a second search to retriever-fallback once "
            "the primary is slower than usual, until the retry budget (shared by retries and "
            "hedges) runs dry; then calls wait out their time slice and fail "
            "DEADLINE_EXCEEDED, the breaker opens, and it rejects calls in microseconds. The "
            "phase runs until the breaker opens.",
            {"retriever-primary": Fault(hang=True)},
            take(3 * per_phase),
            until_open="retriever-primary",
            short="retriever-primary hangs",
        ),
        Phase(
            5,
            "Both generators down",
            "No generator tier is left: a question answered before gets its last good answer "
            "from the cache (stale-if-error); a new one gets the static 'temporarily "
            "unavailable' answer with retry-after and the sources that were found.",
            {
                "generator-primary": Fault(down=True),
                "generator-fallback": Fault(down=True),
            },
            (first[0], *take(4 * per_phase)[: per_phase - 1]),
            short="both generators down",
        ),
        Phase(
            6,
            "Every fault cleared: recovery",
            "Open breakers wait out their open time, let a few probe calls through "
            "(HALF_OPEN), and close when the probes succeed; traffic returns to the primaries.",
            questions=take(5 * per_phase),
            wait_for_recovery=True,
            short="faults cleared",
        ),
    ]
