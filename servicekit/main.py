"""Shared `python -m <component> --impl primary|fallback` entry point for component services."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from servicekit import jsonlog, telemetry
from servicekit.config import Config, ConfigError, Setting, load
from servicekit.server import COMMON_SETTINGS, ServerOptions, ServiceRegistration, serve

IMPLS = ("primary", "fallback")


def component_settings(
    component: str, ports: dict[str, int], extra: Sequence[Setting]
) -> list[Setting]:
    return [
        Setting(
            "impl",
            "primary",
            f"Which {component} implementation this process serves.",
            choices=IMPLS,
        ),
        Setting(
            "port",
            0,
            "gRPC port; 0 means the implementation's default ("
            + ", ".join(f"{impl} {port}" for impl, port in ports.items())
            + ").",
            kind=int,
            minimum=0,
            maximum=65535,
        ),
        Setting(
            "fault_injection",
            False,
            "Serve FaultInjectionService (demos and chaos tests only; never in production).",
            kind=bool,
        ),
        *COMMON_SETTINGS,
        *extra,
    ]


Build = Callable[[Config], tuple[list[ServiceRegistration], Sequence]]


def component_main(
    component: str,
    ports: dict[str, int],
    settings: list[Setting],
    build: Build,
    argv: list[str] | None = None,
) -> int:
    """Parses flags, loads config, builds the servicers and serves until SIGTERM."""
    parser = argparse.ArgumentParser(prog=f"python -m {component}_svc")
    parser.add_argument("--impl", choices=IMPLS, help="implementation (env HARAG_IMPL)")
    parser.add_argument("--port", type=int, help="gRPC port (env HARAG_PORT)")
    parser.add_argument("--config", help="YAML config file (env HARAG_CONFIG)")
    args = parser.parse_args(argv)
    try:
        cfg = load(
            settings, config_file=args.config, overrides={"impl": args.impl, "port": args.port}
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    name = f"{component}-{cfg.impl}"
    jsonlog.setup(name, cfg.log_level)
    log = logging.getLogger(f"harag.{component}")
    telemetry.setup(name)
    try:
        registrations, on_stop = build(cfg)
    except (ConfigError, OSError, ValueError) as exc:
        log.error("startup failed", extra={"error": str(exc)})
        return 1
    options = ServerOptions(
        service_name=name,
        host=cfg.host,
        port=cfg.port or ports[cfg.impl],
        fault_injection=cfg.fault_injection,
        shutdown_grace_s=cfg.shutdown_grace_s,
        shutdown_drain_s=cfg.shutdown_drain_s,
        max_concurrent_rpcs=cfg.max_concurrent_rpcs,
        metrics_port=cfg.metrics_port,
        on_stop=tuple(on_stop),
    )
    return asyncio.run(serve(options, registrations))
