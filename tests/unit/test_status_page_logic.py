"""The status page's own logic on a fake clock and in-process: the activity window, the
transition history, the admin-scope check, and the HTTP endpoint with keys turned on."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request

import pytest

from gateway.config import GatewayConfig
from gateway.query import QueryResult, StageResult
from gateway.resilience.breaker_types import BreakerTransition, CircuitState, TransitionReason
from gateway.resilience.clock import FakeClock
from gateway.resilience.guard import AttemptRecord
from gateway.security.identity import ClientIdentity
from gateway.status.activity import Activity
from gateway.status.auth import Denied, authorize
from gateway.status.config import StatusPageConfig
from gateway.status.http import StatusSources, serving
from gateway.status.transitions import TransitionLog
from gateway.upstreams import Upstreams
from harag.v1 import gateway_pb2
from harag_cli.localports import free_port

UPSTREAMS = frozenset({"embedder-primary", "embedder-fallback", "generator-primary"})


def result(*stages: tuple[int, str, int], cached: bool = False) -> QueryResult:
    """A query result whose stages are (stage enum, served_by, tier)."""
    return QueryResult(
        answer="a",
        model="m",
        sources=[],
        stages=[
            StageResult(
                stage, served_by, tier, 0.01, [AttemptRecord(served_by, tier, "OK", 0.01)], "", None
            )
            for stage, served_by, tier in stages
        ],
        cached=cached,
    )


PRIMARY = result(
    (gateway_pb2.STAGE_EMBED, "embedder-primary", 0),
    (gateway_pb2.STAGE_GENERATE, "generator-primary", 0),
)
DEGRADED = result(
    (gateway_pb2.STAGE_EMBED, "embedder-fallback", 1),
    (gateway_pb2.STAGE_GENERATE, "local:static-answer", 2),
)


def test_shares_cover_the_window_and_age_out():
    clock = FakeClock(1000.0)
    activity = Activity(UPSTREAMS, window_s=60, clock=clock)
    activity.answered(PRIMARY, "q1", "r1", "t1", at=1.0)
    activity.answered(DEGRADED, "q2", "r2", "t2", at=2.0)
    activity.answered(PRIMARY, "q1", "r3", "", at=3.0)
    activity.answered(result(cached=True), "q1", "r4", "", at=4.0)
    activity.shed()

    summary = activity.summary()
    assert summary["answered"] == 4 and summary["shed"] == 1
    assert summary["degraded_share"] == pytest.approx(1 / 4)
    assert summary["cache_hit_rate"] == pytest.approx(1 / 4)
    assert summary["shed_share"] == pytest.approx(1 / 5)
    # A cached answer ran no stage: the tier shares count the three that did.
    assert summary["tiers"]["embed"] == {
        "runs": 3,
        "primary": pytest.approx(2 / 3),
        "fallback": pytest.approx(1 / 3),
        "last_resort": 0,
    }
    assert summary["tiers"]["generate"]["last_resort"] == pytest.approx(1 / 3)
    assert summary["tiers"]["retrieve"] == {
        "runs": 0,
        "primary": None,
        "fallback": None,
        "last_resort": None,
    }

    clock.advance(61)
    later = activity.summary()
    assert (later["answered"], later["shed"], later["degraded_share"]) == (0, 0, None)
    # The list of degraded answers is not a window: the latest stay for the operator.
    assert [q.request_id for q in activity.degraded_queries()] == ["r2"]


def test_model_cost_is_summed_over_the_window_and_per_answer():
    clock = FakeClock(1000.0)
    activity = Activity(UPSTREAMS, window_s=60, clock=clock)
    activity.answered(PRIMARY, "q1", "r1", "", at=1.0, cost_usd=0.0012)
    activity.answered(PRIMARY, "q2", "r2", "", at=2.0, cost_usd=0.0003)
    activity.answered(result(cached=True), "q1", "r3", "", at=3.0)  # a cache hit costs nothing
    summary = activity.summary()
    assert summary["cost_usd"] == pytest.approx(0.0015)
    assert summary["cost_per_answer_usd"] == pytest.approx(0.0005)
    clock.advance(61)
    assert activity.summary()["cost_usd"] == 0
    assert activity.summary()["cost_per_answer_usd"] is None


def test_degraded_list_keeps_the_newest_with_their_receipts():
    activity = Activity(UPSTREAMS, recent_degraded=2, clock=FakeClock())
    for i in range(3):
        activity.answered(DEGRADED, f"query {i}", f"r{i}", f"t{i}", at=float(i))
    listed = activity.degraded_queries()
    assert [q.request_id for q in listed] == ["r2", "r1"]
    stages = listed[0].stages
    assert [s["served_by"] for s in stages] == ["embedder-fallback", "local:static-answer"]
    assert stages[0]["attempts"][0]["upstream"] == "embedder-fallback"
    assert listed[0].to_json("http://jaeger/trace/t2")["trace_url"] == "http://jaeger/trace/t2"


def test_trace_links_prefer_jaeger_then_the_built_in_viewer():
    assert StatusPageConfig().trace_link("abc") == ""
    viewer = StatusPageConfig(trace_viewer_url="http://127.0.0.1:4320/")
    assert viewer.trace_link("abc") == "http://127.0.0.1:4320/traces/abc"
    both = StatusPageConfig(jaeger_url="http://jaeger:16686", trace_viewer_url="http://x")
    assert both.trace_link("abc") == "http://jaeger:16686/trace/abc"
    assert both.trace_link("") == ""


def transition(to: CircuitState, name: str = "embedder-primary") -> BreakerTransition:
    return BreakerTransition(
        breaker=name,
        from_state=CircuitState.CLOSED,
        to_state=to,
        reason=TransitionReason.FORCED_OPEN,
        at=0.0,
        failure_rate=0.0,
        slow_rate=0.0,
        generation=1,
        consecutive_trips=0,
        open_wait_s=None,
    )


async def test_transitions_are_kept_newest_first_and_wake_subscribers():
    log = TransitionLog(kept=2, wall_clock=map(float, itertools.count(1)).__next__)
    woken = log.subscribe()
    log(transition(CircuitState.OPEN))
    assert woken.is_set()
    log(transition(CircuitState.HALF_OPEN))
    log(transition(CircuitState.FORCED_OPEN))
    history = log.history("embedder-primary")
    assert [(h["at"], h["to"]) for h in history] == [(3.0, "FORCED_OPEN"), (2.0, "HALF_OPEN")]
    assert log.history("other") == []
    log.unsubscribe(woken)
    woken.clear()
    log(transition(CircuitState.CLOSED))
    assert not woken.is_set()


ADMIN = ClientIdentity(key_id="k1", client="ops")
READER = ClientIdentity(key_id="k2", client="app", scopes=frozenset({"query"}))
KEYS = {"admin-key": ADMIN, "query-key": READER}


def test_authorize_needs_a_valid_key_with_the_admin_scope():
    assert authorize(None, None).client == "anonymous"  # keys off: the page is open
    assert authorize(None, KEYS.get) == Denied(
        401, "API_KEY_MISSING", "send Authorization: Bearer <API key>"
    )
    assert isinstance(denied := authorize("Bearer nope", KEYS.get), Denied)
    assert (denied.status, denied.reason) == (401, "API_KEY_INVALID")
    assert isinstance(denied := authorize("Bearer query-key", KEYS.get), Denied)
    assert (denied.status, denied.reason) == (403, "SCOPE_MISSING")
    assert authorize("Bearer admin-key", KEYS.get) == ADMIN
    assert authorize("bearer  admin-key ", KEYS.get) == ADMIN


def get(url: str, key: str | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


async def test_with_keys_the_data_needs_an_admin_key_but_the_page_shell_does_not():
    import asyncio

    cfg = GatewayConfig()
    upstreams = Upstreams.from_config(cfg)  # channels connect lazily: nothing is dialled
    sources = StatusSources(
        upstreams,
        Activity(frozenset(u.name for u in upstreams.all())),
        TransitionLog(),
        cfg.status_page,
        validator=KEYS.get,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        async with serving(sources, "127.0.0.1", port):

            def requests() -> list[tuple[int, dict, dict]]:
                return [
                    get(f"{base}/status.json"),
                    get(f"{base}/status.json", "query-key"),
                    get(f"{base}/status.json", "admin-key"),
                ]

            missing, reader, admin = await asyncio.to_thread(requests)
            assert missing[0] == 401 and missing[1]["WWW-Authenticate"].startswith("Bearer")
            assert (reader[0], reader[2]["error"]) == (403, "SCOPE_MISSING")
            assert admin[0] == 200
            assert len(admin[2]["upstreams"]) == len(upstreams.all())

            def shell() -> tuple[int, str]:
                with urllib.request.urlopen(f"{base}/status", timeout=5) as r:
                    return r.status, r.read().decode()

            status, html = await asyncio.to_thread(shell)
            assert status == 200 and "/status/static/status.js" in html
            assert "http" not in html.replace("http-equiv", "")  # nothing fetched from elsewhere
    finally:
        await upstreams.close()
