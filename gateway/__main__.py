"""`python -m gateway`: serve RagGatewayService on the configured port."""

from __future__ import annotations

import asyncio
import gc
import sys

from gateway.admin import GatewayAdmin
from gateway.admission import AdmissionInterceptor, QueueDelayProbe, SheddingController, ShedLog
from gateway.config import GatewayConfig
from gateway.metrics import METRICS
from gateway.pipeline import Pipeline
from gateway.prober import BreakerProber
from gateway.security.ratelimit import RateLimiter
from gateway.server import RagGateway
from gateway.shared.answer_store import AnswerStore
from gateway.shared.breaker_sync import SharedBreakers
from gateway.shared.cache_sync import CacheSync
from gateway.shared.events import SharedEvents
from gateway.shared.redis_link import RedisLink
from gateway.shared.redis_metrics import observe_redis_link
from gateway.telemetry import AttemptTelemetry
from gateway.upstreams import Upstreams
from gateway.workers import WorkerRole, run_workers, worker_role
from harag.v1 import admin_pb2, admin_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from servicekit import jsonlog, telemetry
from servicekit.main import bootstrap
from servicekit.rpc_client_telemetry import instrument_aio_channels
from servicekit.server import ServerOptions, ServiceRegistration, serve

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["RagGatewayService"].full_name
ADMIN_NAME = admin_pb2.DESCRIPTOR.services_by_name["GatewayAdminService"].full_name


# Room above max_inflight_requests for health checks, GetSystemHealth and admin calls.
CONTROL_HEADROOM = 32


def core_rpc_limit(cfg: GatewayConfig) -> int:
    """gRPC's own concurrency cap for the gateway, just above the handler's admission limit.

    The handler's limit sheds first, with RetryInfo; this cap is a backstop so a flood of
    RPCs cannot pile up in the server beyond it. Neither sees calls that gRPC has not yet
    handed to the server: admission control (gateway/admission.py) measures that queue.
    """
    return min(
        cfg.server.max_concurrent_rpcs, cfg.admission.max_inflight_requests + CONTROL_HEADROOM
    )


async def run(cfg: GatewayConfig, role: WorkerRole | None = None) -> int:
    """Serves until SIGTERM; `role` when this process is one of `--workers N`."""
    upstreams = Upstreams.from_config(cfg)
    METRICS.observe_guards(u.guard for u in upstreams.all())
    upstreams.start_health_watch()
    prober = BreakerProber(
        upstreams.all(),
        cfg.upstream.breaker_probe_interval_s,
        timeout_s=max(cfg.deadlines.embed_timeout_s, 1.0),
    )
    prober.start()
    shed_log = ShedLog()
    probe_address = role.private_address() if role else loopback_address(cfg.server.host, cfg.port)
    probe, admission = admission_control(cfg, shed_log, probe_address)
    redis = RedisLink(cfg.redis)
    observe_redis_link(redis)
    events, answers, breakers = shared_state(cfg, redis, upstreams)
    pipeline = Pipeline(upstreams, cfg, observer=AttemptTelemetry(), shared=answers)
    cache_sync = CacheSync(answers, pipeline.cache)
    cache_sync.start()
    if breakers is not None:
        breakers.start()
    events.start()
    limiter = RateLimiter(cfg.rate_limit, redis)
    servicer = RagGateway(
        pipeline,
        upstreams,
        cfg,
        shed_log,
        worker=role.index if role else None,
        limiter=limiter,
        evict=cache_sync.evict_documents,
    )
    admin = GatewayAdmin(upstreams, breakers)
    registrations = [
        ServiceRegistration(
            SERVICE_NAME,
            lambda server: gateway_pb2_grpc.add_RagGatewayServiceServicer_to_server(
                servicer, server
            ),
        ),
        ServiceRegistration(
            ADMIN_NAME,
            lambda server: admin_pb2_grpc.add_GatewayAdminServiceServicer_to_server(admin, server),
        ),
    ]
    options = ServerOptions(
        service_name="gateway",
        host=cfg.server.host,
        port=cfg.port,
        shutdown_grace_s=cfg.server.shutdown_grace_s,
        shutdown_drain_s=cfg.server.shutdown_drain_s,
        max_concurrent_rpcs=core_rpc_limit(cfg),
        metrics_port=cfg.server.metrics_port,
        rpc_observers=(METRICS.observe_rpc,),
        front_interceptors=admission,
        reuse_port=role is not None,
        private_addresses=(role.private_address(),) if role else (),
        on_started=(
            # Start-up's objects live as long as the process: stop scanning them.
            *((gc.freeze,) if cfg.gc_gen0_threshold > 0 else ()),
            *((probe.start,) if probe else ()),
            *((role.report_ready, role.watch_parent) if role else ()),
        ),
        before_stop=(probe.stop,) if probe else (),
        on_stop=(prober.stop, upstreams.close, events.stop, redis.close),
    )
    return await serve(options, registrations)


def shared_state(
    cfg: GatewayConfig, redis: RedisLink, upstreams: Upstreams
) -> tuple[SharedEvents, AnswerStore, SharedBreakers | None]:
    """What this replica shares with the others on Redis (all inert without redis_url)."""
    events = SharedEvents(redis, cfg.shared.shared_poll_interval_s)
    bare = cfg.bare
    answers = AnswerStore(
        redis,
        events,
        cfg.shared,
        0 if bare else cfg.cache.ttl_s,
        0 if bare else cfg.cache.stale_ttl_s,
    )
    shared_breakers = cfg.shared.shared_breakers_enabled and not bare
    breakers = SharedBreakers(events, upstreams.all()) if shared_breakers else None
    return events, answers, breakers


def admission_control(
    cfg: GatewayConfig, shed_log: ShedLog, probe_address: str
) -> tuple[QueueDelayProbe | None, tuple[AdmissionInterceptor, ...]]:
    """The self-probe (sent to `probe_address`, which must reach this very process) and the
    interceptor that sheds by its measurements (off when bare)."""
    if cfg.admission.queue_target_s <= 0 or cfg.bare:
        return None, ()
    controller = SheddingController(cfg.admission.queue_target_s)
    probe = QueueDelayProbe(probe_address, cfg.admission.probe_interval_s, controller)

    def count_shed(method: str) -> None:
        METRICS.shed("queue_delay")
        METRICS.observe_rpc(method, "RESOURCE_EXHAUSTED", 0.0)

    interceptor = AdmissionInterceptor(
        controller, probe, cfg.admission.shed_retry_after_s, count_shed, shed_log
    )
    return probe, (interceptor,)


def loopback_address(host: str, port: int) -> str:
    """Where this process reaches its own server (a wildcard listen address is not dialable)."""
    if host in ("0.0.0.0", ""):
        return f"127.0.0.1:{port}"
    if host in ("::", "[::]"):
        return f"[::1]:{port}"
    return f"{host}:{port}"


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Fewer, larger young-generation passes. Every query allocates thousands of short-lived
    objects (protos, futures, tasks, records), so at Python's default of 700 allocations the
    collector runs several times per query, and its older generations, which it then scans
    more often too, hold the answer cache. gc.freeze() (called once serving) moves everything
    allocated during start-up out of the collector's sight for good."""
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)


def start(cfg: GatewayConfig, argv: list[str]) -> int:
    jsonlog.setup("gateway", cfg.server.log_level)
    if cfg.workers > 1:
        return run_workers(cfg, argv)  # the parent: no gRPC of its own
    tune_garbage_collector(cfg.gc_gen0_threshold)
    telemetry.setup("gateway")
    instrument_aio_channels()  # before any upstream channel exists
    return asyncio.run(run(cfg, worker_role()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return bootstrap(
        "python -m gateway",
        __doc__ or "",
        GatewayConfig,
        lambda cfg: start(cfg, args),
        flags=("port", "workers"),
        switches=("bare",),
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
