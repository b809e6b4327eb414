"""`harag demo` end to end: no mesh running, so it starts its own, runs the six phases
without a terminal, prints a summary, and stops everything it started."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from harag_cli.localports import free_port, port_is_free

HARAG = str(Path(sys.executable).parent / "harag")
PHASES = (
    "Phase 1: Healthy",
    "Phase 2: embedder-primary flaky",
    "Phase 3: embedder-primary down",
    "Phase 4: retriever-primary hanging",
    "Phase 5: Both generators down",
    "Phase 6: Every fault cleared",
)


def summary_rows(out: str) -> dict[int, list[str]]:
    """Phase number -> the cells of its row in the summary table."""
    table = out.split("\nSummary\n", 1)[1].split("\nBreakers\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = r"\s+(\S+)" * 5
        match = re.match(r"\s+(\d) .*?\s{2,}(\d+/\d+)" + cells + "$", line)
        if match:
            rows[int(match.group(1))] = list(match.groups()[1:])
    return rows


async def test_demo_runs_every_phase_and_summarises(tmp_path):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        HARAG,
        "demo",
        "--addr",
        f"127.0.0.1:{port}",
        "--queries",
        "2",
        "--pause",
        "0.3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=240)
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    assert "\033[" not in out, "no colour codes when stdout is not a terminal"
    assert "starting one (7 processes)" in out and "stopped the mesh it started" in out
    positions = [out.find(title) for title in PHASES]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions

    phase = {n: out[positions[n - 1] : positions[n] if n < 6 else None] for n in range(1, 7)}
    assert re.search(r"did not succeed.*embedder-primary UNAVAILABLE x\d+", phase[2])
    assert re.search(r"embed\s+embedder-fallback", phase[3])
    assert "NOT_SERVING" in phase[3]
    assert re.search(r"retrieve\s+retriever-fallback", phase[4])
    assert re.search(r"generate\s+(local:static-answer|cache)", phase[5])
    assert "every breaker CLOSED again" in phase[6]
    for n in range(1, 7):
        assert "system health:" in phase[n], f"phase {n} ends with the system health"
        assert re.search(r"breakers: ", phase[n]), f"phase {n} shows breaker states"

    rows = summary_rows(out)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6], out[-2500:]
    for n, (answered, *_shares) in rows.items():
        done, total = answered.split("/")
        assert done == total and int(total) >= 2, (n, answered)
    assert int(rows[1][1].rstrip("%")) >= 90, "healthy: (nearly) every stage on its primary"
    assert rows[5][3] != "0%", "generators down: the gateway's last resort answers"

    breakers = out.split("\nBreakers\n", 1)[1]
    hang = next(line for line in breakers.splitlines() if "retriever-primary" in line)
    assert re.search(r"hang \(phase 4\)\s+\d+\.\d+ s\s+\d+\.\d+ s", hang), hang
    assert "without an answer" in out and "Every query was answered" in out
    assert port_is_free(port), "the demo stopped the gateway it started"
