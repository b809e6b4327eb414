"""Regenerates docs/status-page.png: the gateway's status page in a degraded mesh.

    .venv/bin/python docs/status_screenshot.py

Starts the seven processes on free loopback ports (fault injection on), loads the sample
corpus, sends traffic, then degrades the mesh: the embedder primary's breaker forced open and
the generator primary failing every call, so answers come from the fallbacks and the page
lists degraded answers with their receipts. Needs Debian's chromium (`make browser`).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

from harag.v1 import admin_pb2, fault_injection_pb2
from harag_cli.clients import api_client
from harag_cli.corpus import sample_corpus
from harag_cli.localports import free_port
from harag_cli.meshctl import MeshControl
from harag_cli.supervisor import Supervisor, mesh_specs
from servicekit.ports import COMPONENT_NAMES

OUT = Path(__file__).resolve().parent / "status-page.png"
CHROMIUM = "/usr/bin/chromium"
QUESTIONS = (
    "How does a circuit breaker decide to open?",
    "What is a retry budget?",
    "Why hedge idempotent reads?",
    "What does a bulkhead protect?",
)


def _quiet(name: str, line: str) -> None:
    pass


async def main() -> int:
    ports = {name: free_port() for name in ("gateway", *COMPONENT_NAMES)}
    http_port = free_port()
    with tempfile.TemporaryDirectory() as data:
        specs = mesh_specs(
            ports=ports,
            data_dir=Path(data),
            fault_injection=True,
            env={"HARAG_METRICS_PORT": "0", "HARAG_HEDGE_ENABLED": "false"},
        )
        gateway = next(s for s in specs if s.name == "gateway")
        gateway.env["HARAG_METRICS_PORT"] = str(http_port)
        supervisor = Supervisor(specs, sink=_quiet)
        await supervisor.start()
        control = MeshControl({s.name: s.address for s in specs}, gateway.address)
        try:
            await supervisor.wait_serving(timeout_s=90)
            async with api_client(gateway.address) as client:
                await client.ingest(sample_corpus())
            await degrade_and_query(control, gateway.address)
            await screenshot(f"http://127.0.0.1:{http_port}/status")
        finally:
            await control.close()
            await supervisor.stop()
    print(f"wrote {OUT}")
    return 0


async def degrade_and_query(control: MeshControl, gateway: str) -> None:
    async with api_client(gateway) as client:
        for question in QUESTIONS:  # healthy traffic first: the tiers' primary share
            await client.query(question)
        await control.transition_breaker("embedder-primary", admin_pb2.BREAKER_ACTION_FORCE_OPEN)
        await control.set_fault(
            "generator-primary",
            fault_injection_pb2.Fault(error_rate=1.0, error_code=14),  # UNAVAILABLE
        )
        for i in range(12):
            await client.query(f"{QUESTIONS[i % len(QUESTIONS)]} ({i})")


async def screenshot(url: str) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1500, "height": 1000})
            await page.goto(url)
            await expect(page.locator("#connection")).to_have_text("live")
            await expect(page.locator("#degraded-queries tbody tr").first).to_be_visible()
            await page.screenshot(path=str(OUT), full_page=True)
        finally:
            await browser.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
