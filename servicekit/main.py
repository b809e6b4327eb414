"""The one bootstrap every ha-rag process starts through, and the components' shared config.

`bootstrap` parses the flags, warns about unknown `HARAG_*` variables, loads and validates
the whole configuration, and only then runs the process: a bad value of any kind exits 2
with one line on stderr, before any socket is opened. `--check-config` stops after
validation and prints each effective setting with its source (for CI and init containers).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeVar

from servicekit import jsonlog, telemetry
from servicekit.config import ConfigError, load_config, unknown_variables
from servicekit.peer_identity import PeerIdentityInterceptor
from servicekit.ports import COMPONENT_PORTS
from servicekit.server import ServerOptions, ServerSettings, ServiceRegistration, serve
from servicekit.settings import RuleViolation, check_fields, section, setting, settings_of
from servicekit.tls import ComponentTls, ServerTls

IMPLS = ("primary", "fallback")
Impl = Literal["primary", "fallback"]

C = TypeVar("C")


def bootstrap(
    prog: str,
    description: str,
    schema: type[C],
    start: Callable[[C], int],
    *,
    flags: Sequence[str] = (),
    switches: Sequence[str] = (),
    argv: list[str] | None = None,
) -> int:
    """Loads `schema` from defaults < file < env < flags, then `start`s the process with it.

    `flags` are setting keys that also get a `--flag VALUE`; `switches` are boolean settings
    that get a bare `--switch`. Flag values are checked by the loader, like every other
    value, so an error names the flag it came from.
    """
    specs = {s.key: s for s in settings_of(schema)}
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for key in flags:
        spec = specs[key]
        parser.add_argument(
            spec.flag, dest=key, metavar=key.upper(), help=f"{spec.doc} (env {spec.env_var})"
        )
    for key in switches:
        spec = specs[key]
        parser.add_argument(
            spec.flag,
            dest=key,
            action="store_true",
            default=None,
            help=f"{spec.doc} (env {spec.env_var})",
        )
    parser.add_argument("--config", help="YAML file of settings (env HARAG_CONFIG)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print each setting with its source, and exit",
    )
    args = parser.parse_args(argv)
    for warning in unknown_variables(specs.values(), process=prog.split()[-1]):
        print(warning, file=sys.stderr)
    try:
        loaded = load_config(
            schema,
            config_file=args.config,
            overrides={key: getattr(args, key) for key in (*flags, *switches)},
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check_config:
        print("\n".join(loaded.describe()))
        return 0
    return start(loaded.config)


# -- component processes (embedder, retriever, generator) ------------------------------


@dataclass(frozen=True)
class ComponentConfig:
    """What every component process is configured with; each component subclasses it,
    redeclares `port` with `component_port(...)` and adds its own settings."""

    component: ClassVar[str] = ""

    impl: Impl = setting("primary", "impl", "Which implementation this process serves.")
    port: int = setting(
        0,
        "port",
        "gRPC port; 0 means the implementation's default.",
        unit="port",
        minimum=0,
        maximum=65535,
    )
    fault_injection: bool = setting(
        False,
        "fault_injection",
        "Serve FaultInjectionService (demos and chaos tests only; never in production).",
    )
    server: ServerSettings = section(ServerSettings)
    tls: ComponentTls = section(ComponentTls)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.component and self.server.metrics_port == self.listen_port:
            raise RuleViolation("{server.metrics_port} must differ from {port}")
        if self.component and self.server.health_port == self.listen_port:
            raise RuleViolation("{server.health_port} must differ from {port}")

    @property
    def name(self) -> str:
        """The process's name in logs, traces and metrics: `<component>-<impl>`."""
        return f"{self.component}-{self.impl}"

    @property
    def listen_port(self) -> int:
        return self.port or COMPONENT_PORTS[self.component][self.impl]


def component_port(component: str) -> int:
    """The `port` field of a component's config, documenting that component's defaults."""
    defaults = ", ".join(f"{impl} {port}" for impl, port in COMPONENT_PORTS[component].items())
    return setting(  # type: ignore[no-any-return]
        0,
        "port",
        f"gRPC port; 0 means the implementation's default ({defaults}).",
        unit="port",
        minimum=0,
        maximum=65535,
    )


OnStop = Callable[[], Awaitable[None]]
CC = TypeVar("CC", bound=ComponentConfig)
Build = Callable[[CC], tuple[list[ServiceRegistration], Sequence[OnStop]]]


def component_main(schema: type[CC], build: Build[CC], argv: list[str] | None = None) -> int:
    """`python -m <component>_svc`: load the config, build the servicers, serve until SIGTERM."""
    component = schema.component

    def start(cfg: CC) -> int:
        jsonlog.setup(cfg.name, cfg.server.log_level)
        log = logging.getLogger(f"harag.{component}")
        telemetry.setup(cfg.name)
        try:
            tls = (
                ServerTls(cfg.tls.files.paths(), cfg.tls.require_client_cert)
                if cfg.tls.files.enabled
                else None
            )
            registrations, on_stop = build(cfg)
        except (OSError, ValueError) as exc:  # BadKeyMaterial is a ValueError
            log.error("startup failed", extra={"error": str(exc)})
            return 1
        server = cfg.server
        # Only the allowed peers (by default the gateway) may call: checked per call, after
        # TLS has proved the certificate is the mesh CA's.
        peers = (
            (PeerIdentityInterceptor(cfg.tls.peers),) if tls is not None and cfg.tls.peers else ()
        )
        options = ServerOptions(
            service_name=cfg.name,
            host=server.host,
            port=cfg.listen_port,
            fault_injection=cfg.fault_injection,
            shutdown_grace_s=server.shutdown_grace_s,
            shutdown_drain_s=server.shutdown_drain_s,
            max_concurrent_rpcs=server.max_concurrent_rpcs,
            max_message_bytes=server.max_message_bytes,
            metrics_port=server.metrics_port,
            tls=tls,
            health_port=server.health_port,
            interceptors=peers,
            on_stop=tuple(on_stop),
        )
        return asyncio.run(serve(options, registrations))

    return bootstrap(
        f"python -m {component}_svc",
        f"Serve the {component} (primary or fallback implementation) until SIGTERM.",
        schema,
        start,
        flags=("impl", "port"),
        argv=argv,
    )
