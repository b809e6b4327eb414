"""The gateway's live status page against a real mesh: its data, its breaker actions, and the
page itself in a real headless browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

from harag.v1 import admin_pb2, gateway_pb2
from harag_cli.localports import free_port

CHROMIUM = "/usr/bin/chromium"
UPSTREAMS = (
    "embedder-primary",
    "embedder-fallback",
    "retriever-primary",
    "retriever-fallback",
    "generator-primary",
    "generator-fallback",
)
VIEWER = "http://127.0.0.1:4320"


def http(method: str, url: str, body: dict | None = None, content_type: str = "application/json"):
    """(status, parsed JSON or text) of one plain HTTP request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, raw, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers["Content-Type"]
    return status, json.loads(raw) if kind.startswith("application/json") else raw.decode()


@pytest.fixture
async def status_gateway(clean_faults, extra_gateway):
    """A gateway of its own (its breakers and page are the test's), and its page's base URL."""
    port = free_port()
    env = {"HARAG_METRICS_PORT": str(port), "HARAG_STATUS_PAGE_TRACE_VIEWER_URL": VIEWER}
    async with extra_gateway(**env) as gw:
        gw.base = f"http://127.0.0.1:{port}"
        yield gw


async def transition(gw, upstream: str, action: admin_pb2.BreakerAction) -> None:
    await gw.admin.TransitionBreaker(
        admin_pb2.TransitionBreakerRequest(upstream=upstream, action=action), timeout=5
    )


async def test_status_json_shows_upstreams_and_degraded_queries_beside_metrics(status_gateway):
    gw = status_gateway
    status, snapshot = http("GET", f"{gw.base}/status.json")
    assert status == 200
    assert [u["name"] for u in snapshot["upstreams"]] == list(UPSTREAMS)
    assert {u["breaker_state"] for u in snapshot["upstreams"]} == {"CLOSED"}

    await transition(gw, "embedder-primary", admin_pb2.BREAKER_ACTION_FORCE_OPEN)
    reply = await gw.stub.Query(gateway_pb2.QueryRequest(query="What is a bulkhead?"), timeout=10)
    assert reply.degraded and reply.stages[0].served_by == "embedder-fallback"

    status, snapshot = http("GET", f"{gw.base}/status.json")
    primary = next(u for u in snapshot["upstreams"] if u["name"] == "embedder-primary")
    assert primary["breaker_state"] == "FORCED_OPEN"
    assert primary["transitions_history"][0]["to"] == "FORCED_OPEN"
    assert snapshot["status"] == "DEGRADED"
    listed = snapshot["degraded_queries"][0]
    assert listed["request_id"] == reply.request_id
    assert listed["query"] == "What is a bulkhead?"
    assert listed["stages"][0]["served_by"] == "embedder-fallback"
    attempts = listed["stages"][0]["attempts"]
    assert attempts[0]["upstream"] == "embedder-primary"
    assert attempts[0]["outcome"] == "BREAKER_OPEN"
    if reply.trace_id:
        assert listed["trace_url"] == f"{VIEWER}/traces/{reply.trace_id}"
    activity = snapshot["activity"]
    assert activity["answered"] >= 1 and activity["degraded_share"] > 0
    assert activity["tiers"]["embed"]["fallback"] > 0

    # /metrics is served on the same port, with the gateway's series.
    status, text = http("GET", f"{gw.base}/metrics")
    assert status == 200 and "harag_gateway_answers_total" in text


async def test_breaker_actions_over_http_use_the_admin_logic(status_gateway):
    gw = status_gateway
    url = f"{gw.base}/status/breakers/generator-primary"
    status, body = http("POST", url, {"action": "force_open"})
    assert (status, body["state"]) == (200, "FORCED_OPEN")
    reply = await gw.admin.ListBreakers(admin_pb2.ListBreakersRequest(), timeout=5)
    states = {b.upstream: b.breaker.state for b in reply.breakers}
    assert states["generator-primary"] == gateway_pb2.CIRCUIT_STATE_FORCED_OPEN

    status, body = http("POST", url, {"action": "reset"})
    assert (status, body["state"]) == (200, "CLOSED")

    # Bad requests name the field; a form post (what another site could send) is refused.
    status, body = http("POST", f"{gw.base}/status/breakers/nope", {"action": "explode"})
    assert status == 400
    assert {v["field"] for v in body["field_violations"]} == {"upstream", "action"}
    status, _ = http("POST", url, {"action": "reset"}, content_type="text/plain")
    assert status == 415


async def test_page_shows_every_upstream_and_a_forced_open_breaker_within_2s(status_gateway):
    from playwright.async_api import async_playwright, expect

    assert os.access(CHROMIUM, os.X_OK), "make test installs Debian's chromium (see the Makefile)"
    gw = status_gateway
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(f"{gw.base}/status")
            for name in UPSTREAMS:
                await expect(page.locator(f'tr[data-upstream="{name}"]')).to_have_count(1)
            await expect(page.locator("#connection")).to_have_text("live")
            state = page.locator('tr[data-upstream="retriever-primary"] .breaker-state')
            await expect(state).to_have_attribute("data-state", "CLOSED")

            # Forced open through the admin API: the page follows within 2 s.
            await transition(gw, "retriever-primary", admin_pb2.BREAKER_ACTION_FORCE_OPEN)
            await expect(state).to_have_attribute("data-state", "FORCED_OPEN", timeout=2000)
            await expect(state).to_contain_text("OPEN")

            # The page's own reset asks first: dismissed, nothing happens; accepted, it resets.
            reset = page.locator(
                'tr[data-upstream="retriever-primary"] button[data-action="reset"]'
            )
            page.once("dialog", lambda dialog: dialog.dismiss())
            await reset.click()
            await expect(page.locator("#action-result")).to_have_text("")
            assert await breaker_state(gw, "retriever-primary") == "FORCED_OPEN"
            page.once("dialog", lambda dialog: dialog.accept())
            await reset.click()
            await expect(state).to_have_attribute("data-state", "CLOSED", timeout=2000)
            assert await breaker_state(gw, "retriever-primary") == "CLOSED"
        finally:
            await browser.close()


async def breaker_state(gw, upstream: str) -> str:
    reply = await gw.admin.ListBreakers(admin_pb2.ListBreakersRequest(), timeout=5)
    state = next(b.breaker.state for b in reply.breakers if b.upstream == upstream)
    return gateway_pb2.CircuitState.Name(state).removeprefix("CIRCUIT_STATE_")


async def test_gateway_without_the_page_still_serves_metrics(clean_faults, extra_gateway):
    port = free_port()
    async with extra_gateway(HARAG_METRICS_PORT=str(port), HARAG_STATUS_PAGE_ENABLED="false"):
        base = f"http://127.0.0.1:{port}"
        status, text = http("GET", f"{base}/metrics")
        assert status == 200 and "harag_gateway_" in text
        assert http("GET", f"{base}/status.json")[0] == 404
