"""What tracing costs, this code against another revision's, measured side by side in one mesh.

Four gateways over the same six components: this tree's and `--base`'s (a git revision,
checked out with `git archive` into a temporary directory), each with every request
traced (exporting OTLP to a collector stand-in) and untraced (sampler `always_off`). The
load alternates between them round by round (`bench.scenarios.pairs.alternate`), so a
noisy neighbour lands on all four alike. Prints, per side, throughput and the serving
gateway's CPU time per answer, and per revision the traced/untraced ratios. The
components run this tree's code on every side.

    python -m bench.compare_tracing --base 41729be
    python -m bench.compare_tracing --base HEAD~3 --seconds 2 --rounds 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.loadgen import LoadSpec
from bench.mesh import BenchMesh
from bench.otlp_sink import OtlpSink
from bench.scenarios.pairs import CONCURRENCY, Side, alternate
from harag_cli.localports import free_port
from harag_cli.supervisor import ProcessSpec, Supervisor

UNTRACED = {"OTEL_TRACES_SAMPLER": "always_off"}


def checkout(revision: str, into: Path) -> None:
    """The revision's files (tracked only) under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryFile() as tar_file:
        tar_file.write(archive)
        tar_file.seek(0)
        with tarfile.open(fileobj=tar_file) as tar:
            tar.extractall(into, filter="data")


async def add_gateway_from(mesh: BenchMesh, tree: Path, name: str, env: dict[str, str]) -> str:
    """A gateway running the code under `tree` (first on its import path)."""
    base = mesh.by_name["gateway"]
    port = free_port()
    run = (
        f"import sys, runpy; sys.path.insert(0, {str(tree)!r}); "
        "runpy.run_module('gateway', run_name='__main__', alter_sys=True)"
    )
    spec = ProcessSpec(
        name, [sys.executable, "-c", run], port, {**base.env, "HARAG_PORT": str(port), **env}
    )
    supervisor = Supervisor([spec], sink=mesh.tail, restart=False)
    mesh._extra.append(supervisor)  # stopped with the mesh
    await supervisor.start()
    await supervisor.wait_serving(timeout_s=60)
    return spec.address


def summarise(sides: list[Side], processes: dict[str, str]) -> dict[str, object]:
    by_label = {side.label: side for side in sides}
    out: dict[str, object] = {}
    for side in sides:
        answers = max(side.answers, 1)
        out[side.label] = {
            "qps": statistics.fmean(r.summary.qps for r in side.runs),
            "gateway_cpu_ms_per_answer": side.cpu_s.get(processes[side.label], 0.0)
            / answers
            * 1000,
            "all_cpu_ms_per_answer": sum(side.cpu_s.values()) / answers * 1000,
        }
    for code in ("this", "base"):
        on, off = by_label[f"{code} traced"], by_label[f"{code} untraced"]
        on_row, off_row = out[on.label], out[off.label]
        assert isinstance(on_row, dict) and isinstance(off_row, dict)
        per_round = [a.summary.qps / b.summary.qps for a, b in zip(on.runs, off.runs, strict=True)]
        out[f"{code}: traced / untraced"] = {
            "throughput_median_of_rounds": statistics.median(per_round),
            "per_round": [round(x, 2) for x in per_round],
            "gateway_cpu_ratio": on_row["gateway_cpu_ms_per_answer"]
            / off_row["gateway_cpu_ms_per_answer"],
            "gateway_cpu_ms_added": on_row["gateway_cpu_ms_per_answer"]
            - off_row["gateway_cpu_ms_per_answer"],
            "all_cpu_ratio": on_row["all_cpu_ms_per_answer"] / off_row["all_cpu_ms_per_answer"],
        }
    return out


async def compare(base: Path, seconds: float, rounds: int) -> dict[str, object]:
    spec = LoadSpec(concurrency=CONCURRENCY, duration_s=seconds, warmup_s=0.5)
    async with OtlpSink(free_port()) as sink:
        async with BenchMesh(env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}) as mesh:
            addresses = {
                "this traced": mesh.gateway_address,
                "this untraced": await mesh.add_gateway("gateway-untraced", UNTRACED),
                "base traced": await add_gateway_from(mesh, base, "gateway-base", {}),
                "base untraced": await add_gateway_from(
                    mesh, base, "gateway-base-untraced", UNTRACED
                ),
            }
            sides = await alternate(mesh, addresses, spec, rounds)
    processes = {
        "this traced": "gateway",
        "this untraced": "gateway-untraced",
        "base traced": "gateway-base",
        "base untraced": "gateway-base-untraced",
    }
    return summarise(sides, processes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare_tracing", description=__doc__)
    p.add_argument("--base", required=True, help="git revision to compare against")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one side's round")
    p.add_argument("--rounds", type=int, default=16)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="harag-base-") as tmp:
        checkout(args.base, Path(tmp))
        result = asyncio.run(compare(Path(tmp), args.seconds, args.rounds))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
