"""A seeded, randomised fault schedule for the chaos suite.

The first episodes cover every upstream once, cycling through every kind of fault, so
that each tier of each component is hit whatever the seed; one of them hits both tiers of
one component at once. The rest are drawn at random: one or two upstreams, any fault.
A "kill" is a SIGKILL of the process; the supervisor restarts it. At most one kill per
upstream, so restart backoffs stay short.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc
from google.protobuf import duration_pb2

from harag.v1 import fault_injection_pb2
from servicekit.ports import COMPONENT_NAMES

UPSTREAMS = COMPONENT_NAMES
KINDS = ("error", "latency", "hang", "down", "kill")
ERROR_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
)


@dataclass(frozen=True)
class Action:
    upstream: str
    kind: str
    fault: fault_injection_pb2.Fault | None  # None for a kill

    def describe(self) -> str:
        if self.fault is None:
            return f"{self.upstream}: SIGKILL"
        return f"{self.upstream}: {self.kind} {self.fault}".replace("\n", " ").strip()


@dataclass(frozen=True)
class Episode:
    start_s: float  # since the chaos began
    hold_s: float  # how long the faults stay before they are cleared
    actions: tuple[Action, ...]


def _fault(kind: str, rng: random.Random) -> fault_injection_pb2.Fault | None:
    if kind == "kill":
        return None
    if kind == "error":
        code = rng.choice(ERROR_CODES)
        return fault_injection_pb2.Fault(
            error_rate=rng.choice((0.3, 0.5, 0.8, 1.0)), error_code=code.value[0]
        )
    if kind == "latency":
        latency = duration_pb2.Duration()
        latency.FromMilliseconds(rng.choice((50, 150, 300, 600)))
        return fault_injection_pb2.Fault(latency=latency, latency_rate=rng.choice((0.3, 1.0)))
    if kind == "hang":
        return fault_injection_pb2.Fault(hang=True)
    return fault_injection_pb2.Fault(down=True)


def build(seed: int, episodes: int = 18) -> list[Episode]:
    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    killed: set[str] = set()

    def action(upstream: str, kind: str) -> Action:
        if kind == "kill":
            if upstream in killed:
                kind = rng.choice(KINDS[:-1])
            else:
                killed.add(upstream)
        return Action(upstream, kind, _fault(kind, rng))

    # Coverage: every upstream once, kinds cycling; the last two are one component's tiers.
    order = list(UPSTREAMS)
    rng.shuffle(order)
    component = rng.choice(("embedder", "retriever", "generator"))
    pair = [f"{component}-primary", f"{component}-fallback"]
    order = [u for u in order if u not in pair]
    groups: list[list[str]] = [[u] for u in order] + [pair]
    planned: list[tuple[Action, ...]] = []
    for i, group in enumerate(groups):
        planned.append(tuple(action(u, kinds[(i + j) % len(kinds)]) for j, u in enumerate(group)))
    while len(planned) < episodes:
        targets = rng.sample(UPSTREAMS, 2 if rng.random() < 0.35 else 1)
        planned.append(tuple(action(u, rng.choice(KINDS)) for u in targets))

    out, at = [], 0.5
    for actions in planned:
        hold = rng.uniform(1.0, 2.5)
        out.append(Episode(round(at, 2), round(hold, 2), actions))
        at += hold + rng.uniform(0.2, 0.8)
    return out
