"""`python -m bench` (`make bench`): every scenario, one run, results in bench/results/.

Each scenario starts fresh local processes and stops them when done. Writes, per
scenario, `<name>.json` and `<name>.md`; for the whole run `summary.md` (machine, command,
every table, every target), `results.json`, and the plots `latency_vs_concurrency.png` and
`hung_primary_timeline.png`. `--only` runs some scenarios and writes `summary-partial.md`
and `results-partial.json` instead. `--quick` shortens every run for a smoke test; its
numbers are not the ones to publish.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import micro_breaker
from bench.report import (
    RESULTS,
    CpuAudit,
    ScenarioResult,
    machine,
    target_value,
    write_json,
    write_markdown,
)
from bench.scenarios import (
    embedders,
    gateway_overhead,
    gateway_workers,
    hung_primary,
    overload,
    pairs,
    rate_limits,
    retriever_ann,
    retriever_scaling,
    retry_budget,
    saturation,
)

BUSY_SHARE = 0.05  # share of the CPUs used by other work that makes a scenario's note
ORDER = (
    "breaker_overhead",
    "saturation",
    "resilience_vs_bare",
    "tracing_on_vs_off",
    "gateway_overhead",
    "gateway_workers",
    "hung_primary",
    "retry_budget",
    "overload",
    "retriever_scaling",
    "rate_limits",
    "retriever_ann",
    "embedders",
)


def _scenarios(
    quick: bool, state: dict[str, float]
) -> dict[str, Callable[[], Awaitable[ScenarioResult]]]:
    async def micro() -> ScenarioResult:
        return await asyncio.to_thread(micro_breaker.run, 20_000 if quick else micro_breaker.CALLS)

    async def sat() -> ScenarioResult:
        result = await (saturation.run(2.0, 1.0) if quick else saturation.run())
        state["saturation_qps"] = result.data["saturation_qps"]
        return result

    async def over() -> ScenarioResult:
        if "saturation_qps" not in state:  # run alone: measure saturation first, briefly
            state["saturation_qps"] = (await saturation.run(4.0, 1.0, (32,))).data["saturation_qps"]
        qps = state["saturation_qps"]
        return await (overload.run(qps, 3.0, 1.0) if quick else overload.run(qps))

    return {
        "breaker_overhead": micro,
        "saturation": sat,
        "resilience_vs_bare": lambda: (
            pairs.resilience_vs_bare(2.0, 1.0, 2) if quick else pairs.resilience_vs_bare()
        ),
        "tracing_on_vs_off": lambda: (
            pairs.tracing_on_vs_off(2.0, 1.0, 2) if quick else pairs.tracing_on_vs_off()
        ),
        "gateway_overhead": lambda: (
            gateway_overhead.run(60, 10) if quick else gateway_overhead.run()
        ),
        "gateway_workers": lambda: (
            gateway_workers.run(2.0, 1.0, 2) if quick else gateway_workers.run()
        ),
        "hung_primary": lambda: hung_primary.run(5.0, 8.0, 6.0) if quick else hung_primary.run(),
        "retry_budget": lambda: retry_budget.run(5.0, 3.0) if quick else retry_budget.run(),
        "overload": over,
        "rate_limits": lambda: rate_limits.run(60, 10, 50) if quick else rate_limits.run(),
        "embedders": lambda: (
            embedders.run(("hash-ngram", "hash-word")) if quick else embedders.run()
        ),
        "retriever_scaling": lambda: (
            retriever_scaling.run((1_000, 5_000), 50) if quick else retriever_scaling.run()
        ),
        "retriever_ann": lambda: (
            retriever_ann.run(retriever_ann.QUICK_DOCUMENTS, 60) if quick else retriever_ann.run()
        ),
    }


def _plots(results: dict[str, ScenarioResult], out: Path) -> list[Path]:
    try:
        from bench import plots
    except ImportError:
        return []
    made = []
    try:
        if "saturation" in results:
            made.append(
                plots.latency_vs_concurrency(
                    results["saturation"].data, out / "latency_vs_concurrency.png"
                )
            )
        if "hung_primary" in results:
            made.append(
                plots.hung_primary_timeline(
                    results["hung_primary"].data, out / "hung_primary_timeline.png"
                )
            )
    except ImportError:
        print("bench: matplotlib is not installed (pip install -e '.[bench]'): no plots")
    return made


def _summary(
    results: dict[str, ScenarioResult], command: str, took_s: float, plots: list[Path]
) -> str:
    info = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {info['cpus']} CPUs "
        f"({info['cpu']}), {info['memory_gb']} GB RAM, {info['os']}, Python {info['python']}; "
        f"every process of the mesh and the load generator share these CPUs.",
        "",
        f"Command: `{command}` ({took_s / 60:.1f} minutes).",
        "",
    ]
    targets = [t for r in results.values() for t in r.targets]
    if targets:
        lines += ["## Targets", "", "| target | measured | limit | met |", "|---|---|---|---|"]
        lines += [
            f"| {t.name} | {target_value(t.value)} | {t.limit} | {'yes' if t.met else '**no**'} |"
            for t in targets
        ]
        lines.append("")
    lines.append(
        "Share of the CPUs used by other work on the machine during each scenario (noise): "
        + ", ".join(
            f"{n} {r.data.get('other_cpu', {}).get('foreign_share', 0):.0%}"
            for n, r in results.items()
        )
        + "."
    )
    lines.append("")
    lines += [r.markdown() for r in results.values()]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines)


async def _run(names: list[str], quick: bool, out: Path) -> dict[str, ScenarioResult]:
    state: dict[str, float] = {}
    scenarios = _scenarios(quick, state)
    results: dict[str, ScenarioResult] = {}
    for name in names:
        started = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        audit = CpuAudit()
        result = await scenarios[name]()
        result.data["other_cpu"] = other = audit.result()
        if other["foreign_share"] > BUSY_SHARE:
            result.notes.append(
                f"Other work on the machine used {other['foreign_share']:.0%} of its CPU "
                "during this scenario: these numbers are noisier than usual."
            )
        results[name] = result
        write_json(out / f"{name}.json", result.as_dict())
        write_markdown(out / f"{name}.md", result.markdown())
        print(result.markdown(), flush=True)
        print(f"bench: {name} took {time.perf_counter() - started:.0f} s\n", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    started = time.perf_counter()
    results = asyncio.run(_run(names, args.quick, args.out))
    made = _plots(results, args.out)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    took = time.perf_counter() - started
    # A partial run must not overwrite the full run's summary that the docs quote.
    suffix = "-partial" if args.only else ""
    write_markdown(args.out / f"summary{suffix}.md", _summary(results, command.strip(), took, made))
    write_json(
        args.out / f"results{suffix}.json",
        {
            "machine": machine(),
            "took_s": took,
            "results": {k: v.as_dict() for k, v in results.items()},
        },
    )
    missed = [t.name for r in results.values() for t in r.targets if not t.met]
    print(f"bench: done in {took / 60:.1f} min; results in {args.out}")
    if missed:
        print("bench: targets missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
