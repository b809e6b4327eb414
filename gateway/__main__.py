"""`python -m gateway`: serve RagGatewayService on the configured port."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from pathlib import Path

from gateway.admin import GatewayAdmin
from gateway.admin_listener import start_admin_listener
from gateway.admission import AdmissionInterceptor, QueueDelayProbe, SheddingController, ShedLog
from gateway.config import GatewayConfig
from gateway.feedback.loop import FeedbackLoop
from gateway.feedback.store import open_store
from gateway.jobs import IngestJobs
from gateway.metrics import METRICS
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.setup import build_outbox, observe_outbox
from gateway.pipeline import Pipeline
from gateway.prober import BreakerProber
from gateway.security.access_config import resolve_admin_port
from gateway.security.auth import AuthInterceptor, ClientLogFilter
from gateway.security.identity import ClientIdentity
from gateway.security.key_watch import KeyFileWatcher
from gateway.security.keys import KeyFileError, Verdict
from gateway.security.ratelimit import RateLimiter
from gateway.server import RagGateway
from gateway.shared.answer_store import AnswerStore
from gateway.shared.breaker_sync import SharedBreakers
from gateway.shared.cache_sync import CacheSync
from gateway.shared.events import SharedEvents
from gateway.shared.redis_link import RedisLink
from gateway.shared.redis_metrics import observe_redis_link
from gateway.status.activity import Activity
from gateway.status.auth import TokenValidator
from gateway.status.http import StatusSources, http_endpoint
from gateway.status.transitions import TransitionLog
from gateway.telemetry import AttemptTelemetry
from gateway.upstreams import Upstreams
from gateway.workers import WorkerRole, own_address, run_workers, worker_role
from harag.v1 import gateway_pb2, gateway_pb2_grpc
from servicekit import jsonlog, telemetry
from servicekit.main import bootstrap
from servicekit.rpc_client_telemetry import instrument_aio_channels
from servicekit.server import ServerOptions, ServiceRegistration, serve
from servicekit.tls import BadKeyMaterial, ServerTls

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["RagGatewayService"].full_name


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


def load_keys(cfg: GatewayConfig) -> KeyFileWatcher | None:
    """The key file, loaded once (None with auth off); raises KeyFileError when unusable."""
    if not cfg.access.auth_enabled:
        return None
    watcher = KeyFileWatcher(Path(cfg.access.auth_key_file), cfg.access.auth_key_reload_s)
    watcher.load()
    return watcher


async def run(
    cfg: GatewayConfig, role: WorkerRole | None = None, keys: KeyFileWatcher | None = None
) -> int:
    """Serves until SIGTERM; `role` when this process is one of `--workers N`; `keys` the
    loaded key file when auth is on."""
    try:
        upstreams = Upstreams.from_config(cfg)
        public_tls = (
            ServerTls(cfg.tls.public_paths(), bool(cfg.tls.public.client_ca_file))
            if cfg.tls.public.enabled
            else None
        )
    except BadKeyMaterial as exc:
        logging.getLogger("harag.gateway").error("startup failed", extra={"error": str(exc)})
        return 1
    METRICS.observe_guards(u.guard for u in upstreams.all())
    METRICS.prime()
    upstreams.start_health_watch()
    prober = BreakerProber(
        upstreams.all(),
        cfg.upstream.breaker_probe_interval_s,
        timeout_s=max(cfg.deadlines.embed_timeout_s, 1.0),
    )
    prober.start()
    shed_log = ShedLog()
    status = status_sources(cfg, upstreams, keys)
    activity = status.activity if status is not None else None
    # The admission self-probe is plaintext: with TLS on the public port it takes a private
    # address of this process's own.
    private = role.private_address() if role else (own_address() if public_tls else None)
    probe_address = private or loopback_address(cfg.server.host, cfg.port)
    probe, admission = admission_control(cfg, shed_log, probe_address, activity)
    redis = RedisLink(cfg.redis)
    observe_redis_link(redis)
    events, answers, breakers = shared_state(cfg, redis, upstreams)
    pipeline = Pipeline(upstreams, cfg, observer=AttemptTelemetry(), shared=answers)
    cache_sync = CacheSync(answers, pipeline.cache)
    cache_sync.start()
    if breakers is not None:
        breakers.start()
        if status is not None:
            status.shared_breakers = breakers
    events.start()
    limiter = RateLimiter(cfg.rate_limit, redis)
    outbox = build_outbox(cfg.outbox, redis)
    delivery = OutboxDelivery(
        outbox,
        upstreams.chains["retriever"],
        cfg.outbox,
        cfg.ingest,
        on_applied=cache_sync.evict_documents,
    )
    observe_outbox(delivery)
    jobs = IngestJobs(outbox, delivery, upstreams, cfg.ingest, cfg.chunking, cfg.outbox)
    feedback = FeedbackLoop(
        cfg.feedback, open_store(cfg.feedback.state_dir, cfg.feedback.postgres_dsn)
    )
    servicer = RagGateway(
        pipeline,
        upstreams,
        cfg,
        shed_log,
        worker=role.index if role else None,
        limiter=limiter,
        activity=activity,
        delivery=delivery,
        jobs=jobs,
        evict=cache_sync.evict_documents,
        feedback=feedback,
    )
    auth = (
        (AuthInterceptor(lambda: keys.keys, cfg.access.auth_open_reflection),)
        if keys is not None
        else ()
    )
    admin_port = resolve_admin_port(cfg.access.admin_port, cfg.port)
    admin_server = None
    if admin_port:
        admin_server = await start_admin_listener(
            GatewayAdmin(upstreams, breakers),
            cfg.server.host,
            admin_port,
            interceptors=auth,
            observers=(METRICS.observe_rpc,),
            reuse_port=role is not None,
        )
        if admin_server is None:
            await prober.stop()
            await upstreams.close()
            return 1
    registrations = [
        ServiceRegistration(
            SERVICE_NAME,
            lambda server: gateway_pb2_grpc.add_RagGatewayServiceServicer_to_server(
                servicer, server
            ),
        ),
    ]
    options = ServerOptions(
        service_name="gateway",
        host=cfg.server.host,
        port=cfg.port,
        shutdown_grace_s=cfg.server.shutdown_grace_s,
        shutdown_drain_s=cfg.server.shutdown_drain_s,
        max_concurrent_rpcs=core_rpc_limit(cfg),
        max_message_bytes=cfg.server.max_message_bytes,
        metrics_port=cfg.server.metrics_port,
        rpc_observers=(METRICS.observe_rpc,),
        interceptors=auth,
        front_interceptors=admission,
        reuse_port=role is not None,
        private_addresses=(private,) if private else (),
        tls=public_tls,
        health_port=cfg.server.health_port,
        on_started=(
            # Start-up's objects live as long as the process: stop scanning them.
            *((gc.freeze,) if cfg.gc_gen0_threshold > 0 else ()),
            *((probe.start,) if probe else ()),
            delivery.start,
            feedback.start,
            *((role.report_ready, role.watch_parent) if role else ()),
            *((keys.start,) if keys else ()),
        ),
        before_stop=(probe.stop,) if probe else (),
        on_stop=(
            jobs.stop,
            feedback.stop,
            delivery.stop,
            outbox.close,
            prober.stop,
            upstreams.close,
            events.stop,
            redis.close,
            *((keys.stop,) if keys else ()),
        ),
        http_endpoint=http_endpoint(status),
    )
    try:
        return await serve(options, registrations)
    finally:
        if admin_server is not None:
            await admin_server.stop(cfg.server.shutdown_grace_s)


def status_sources(
    cfg: GatewayConfig, upstreams: Upstreams, keys: KeyFileWatcher | None
) -> StatusSources | None:
    """What the status page reads, its recorders attached (None: the page is off).

    With API keys on, the page's data and actions need a key with the `admin` scope, checked
    against the same key file as the gRPC API; with them off the page is open to whoever
    reaches the HTTP port, like the gRPC API."""
    page = cfg.status_page
    if not page.enabled:
        return None
    transitions = TransitionLog()
    for upstream in upstreams.all():
        if upstream.guard.breaker is not None:
            upstream.guard.breaker.add_listener(transitions)
    activity = Activity(
        frozenset(u.name for u in upstreams.all()), page.window_s, page.recent_degraded
    )
    validator = None if keys is None else key_validator(keys)
    return StatusSources(upstreams, activity, transitions, page, validator=validator)


def key_validator(keys: KeyFileWatcher) -> TokenValidator:
    """The status page's bearer-token check over the key file the gRPC API uses."""

    def validate(token: str) -> ClientIdentity | None:
        verdict, key = keys.keys.verify(token, time.time())
        return key.identity() if verdict is Verdict.ACCEPTED and key is not None else None

    return validate


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
    cfg: GatewayConfig, shed_log: ShedLog, probe_address: str, activity: Activity | None = None
) -> tuple[QueueDelayProbe | None, tuple[AdmissionInterceptor, ...]]:
    """The self-probe (sent to `probe_address`, which must reach this very process) and the
    interceptor that sheds by its measurements (off when bare)."""
    if cfg.admission.queue_target_s <= 0 or cfg.bare:
        return None, ()
    controller = SheddingController(cfg.admission.queue_target_s)
    probe = QueueDelayProbe(probe_address, cfg.admission.probe_interval_s, controller)

    def count_shed(method: str) -> None:
        METRICS.shed("queue_delay")
        if activity is not None:
            activity.shed()
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
    try:  # a bad key file stops the start like a bad setting: exit 2, one line
        keys = load_keys(cfg)
    except KeyFileError as exc:
        print(f"config error: auth_key_file: {exc}", file=sys.stderr)
        return 2
    jsonlog.setup("gateway", cfg.server.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ClientLogFilter())
    if cfg.workers > 1:
        return run_workers(cfg, argv)  # the parent: no gRPC of its own
    tune_garbage_collector(cfg.gc_gen0_threshold)
    telemetry.setup("gateway")
    instrument_aio_channels()  # before any upstream channel exists
    return asyncio.run(run(cfg, worker_role(), keys))


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
