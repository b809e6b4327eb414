"""deploy/compose.yaml and its chaos overlay, read the way `docker compose` reads them."""

from __future__ import annotations

import pytest
import yaml
from deploy_support import (
    COMPONENT_SERVICES,
    COMPOSE_CHAOS,
    DEPLOY,
    DOCKERFILE,
    GATEWAY_CONFIG,
    GATEWAY_CONFIG_MOUNT,
    REPO,
    SERVICES,
    compose_env,
    cpu_millis,
    healthcheck_command,
    load_compose,
    memory_bytes,
    project_version,
)

COMPOSE = load_compose()
CHAOS = load_compose(COMPOSE_CHAOS)
COMPOSE_MODELS = DEPLOY / "compose.models.yaml"
MODELS = load_compose(COMPOSE_MODELS)
NAMES = [s.name for s in SERVICES]
# The compose-spec service keys these files may use; a typo (say `healtcheck`) is an error
# here rather than a silently ignored key.
SERVICE_KEYS = {
    "image", "build", "command", "environment", "expose", "ports", "volumes", "configs",
    "deploy", "depends_on", "healthcheck", "restart", "read_only", "tmpfs", "cap_drop",
    "security_opt", "stop_grace_period", "profiles", "entrypoint",
}  # fmt: skip
CERTS_MOUNT = "mesh-certs:/etc/harag-tls:ro"
TOP_LEVEL_KEYS = {"name", "services", "volumes", "configs"}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise AssertionError(f"not a duration: {duration}")


def test_the_seven_services_jaeger_prometheus_grafana_and_the_certificate_maker():
    assert set(COMPOSE["services"]) == {*NAMES, "jaeger", "prometheus", "grafana", "certs"}


def test_every_service_waits_for_the_certificates_and_mounts_them_read_only():
    certs = COMPOSE["services"]["certs"]
    assert certs["entrypoint"] == ["python"]
    assert certs["command"] == ["-m", "servicekit.mesh_certs", "/var/lib/harag"]
    assert certs["volumes"] == ["mesh-certs:/var/lib/harag"] and "mesh-certs" in COMPOSE["volumes"]
    assert certs["restart"] == "no"
    for name in NAMES:
        spec = COMPOSE["services"][name]
        assert spec["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
        assert CERTS_MOUNT in spec["volumes"], name
        env = compose_env(COMPOSE, name)
        for key, suffix in (("CERT", ".crt"), ("KEY", ".key")):
            assert env[f"HARAG_TLS_{key}_FILE"] == f"/etc/harag-tls/{name}{suffix}"
        assert env["HARAG_TLS_CA_FILE"] == "/etc/harag-tls/ca.crt"


@pytest.mark.parametrize("document", [COMPOSE, CHAOS, MODELS], ids=["base", "chaos", "models"])
def test_only_known_keys(document):
    assert {k for k in document if not k.startswith("x-")} <= TOP_LEVEL_KEYS
    for name, service in document["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_builds_the_service_image_from_the_repo_root(service):
    spec = COMPOSE["services"][service.name]
    assert spec["image"] == f"{service.image}:{project_version()}"
    assert (DEPLOY / spec["build"]["context"]).resolve() == REPO
    assert (REPO / spec["build"]["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_health_is_the_image_probe_and_dependents_wait_for_it(service):
    spec = COMPOSE["services"][service.name]
    final_stage = service.image_stages()[-1]
    assert spec["healthcheck"]["test"] == ["CMD", *healthcheck_command(final_stage)]
    assert spec["depends_on"]["jaeger"] == {"condition": "service_healthy"}
    if service.impl is None:
        for component in COMPONENT_SERVICES:
            assert spec["depends_on"][component.name] == {"condition": "service_healthy"}
    assert "healthcheck" in COMPOSE["services"]["jaeger"]


@pytest.mark.parametrize("name", [*NAMES, "jaeger"])
def test_resources_are_limited_and_reserved(name):
    resources = COMPOSE["services"][name]["deploy"]["resources"]
    limits, reservations = resources["limits"], resources["reservations"]
    assert 0 < cpu_millis(reservations["cpus"]) <= cpu_millis(limits["cpus"])
    assert 0 < memory_bytes(reservations["memory"]) <= memory_bytes(limits["memory"])


def test_embedder_and_generator_primaries_get_the_most_cpu():
    cpus = {
        n: cpu_millis(COMPOSE["services"][n]["deploy"]["resources"]["limits"]["cpus"])
        for n in NAMES
    }
    assert cpus["embedder-primary"] == cpus["generator-primary"] == max(cpus.values())


@pytest.mark.parametrize("service", COMPONENT_SERVICES, ids=lambda s: s.name)
def test_each_retriever_keeps_its_index_in_its_own_named_volume(service):
    spec = COMPOSE["services"][service.name]
    mounts = [m for m in spec["volumes"] if m != CERTS_MOUNT]
    if service.component != "retriever":
        assert mounts == []
        return
    [mount] = mounts
    volume, _, path = mount.partition(":")
    assert volume == f"{service.name}-data" and volume in COMPOSE["volumes"]
    assert path == compose_env(COMPOSE, service.name)["HARAG_DATA_DIR"]


@pytest.mark.parametrize("service", COMPONENT_SERVICES, ids=lambda s: s.name)
def test_fault_injection_is_off_unless_the_chaos_overlay_is_used(service):
    assert compose_env(COMPOSE, service.name)["HARAG_FAULT_INJECTION"] == "false"
    chaos_env = compose_env(CHAOS, service.name)
    assert chaos_env["HARAG_FAULT_INJECTION"] == "true"
    # The overlay changes nothing else of the service's environment.
    assert {k: v for k, v in chaos_env.items() if k != "HARAG_FAULT_INJECTION"} == {
        k: v for k, v in compose_env(COMPOSE, service.name).items() if k != "HARAG_FAULT_INJECTION"
    }
    port = compose_env(COMPOSE, service.name)["HARAG_PORT"]
    assert CHAOS["services"][service.name]["ports"] == [f"127.0.0.1:{port}:{port}"]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_traces_go_to_jaeger(service):
    env = compose_env(COMPOSE, service.name)
    assert env["OTEL_SERVICE_NAME"] == service.name
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"


def test_jaeger_v2_with_otlp_and_the_ui():
    jaeger = COMPOSE["services"]["jaeger"]
    repository, _, tag = jaeger["image"].rpartition(":")
    assert repository == "jaegertracing/jaeger" and tag.startswith("2.") and tag.count(".") == 2
    assert {"16686:16686", "4317:4317"} <= {p.split("#")[0].strip() for p in jaeger["ports"]}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_stop_grace_period_outlasts_drain_plus_grace(service):
    spec = COMPOSE["services"][service.name]
    env = compose_env(COMPOSE, service.name)
    budget = float(env["HARAG_SHUTDOWN_DRAIN_S"]) + float(env["HARAG_SHUTDOWN_GRACE_S"])
    assert seconds(spec["stop_grace_period"]) >= budget + 5


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_containers_are_hardened(service):
    spec = COMPOSE["services"][service.name]
    assert spec["read_only"] is True and "/tmp" in spec["tmpfs"]
    assert spec["cap_drop"] == ["ALL"] and "no-new-privileges:true" in spec["security_opt"]


def test_gateway_reads_the_shared_config_file_and_its_chains_resolve():
    gateway = COMPOSE["services"]["gateway"]
    [config] = gateway["configs"]
    assert (
        config["target"] == compose_env(COMPOSE, "gateway")["HARAG_CONFIG"] == GATEWAY_CONFIG_MOUNT
    )
    assert (DEPLOY / COMPOSE["configs"][config["source"]]["file"]).resolve() == GATEWAY_CONFIG
    assert "50051:50051" in gateway["ports"]
    settings = yaml.safe_load(GATEWAY_CONFIG.read_text())
    for component in ("embedder", "retriever", "generator"):
        for entry in settings[f"{component}_chain"].split(","):
            name, _, address = entry.partition("=")
            host, _, port = address.removeprefix("dns:///").rpartition(":")
            assert host == name and host in COMPOSE["services"]
            assert compose_env(COMPOSE, host)["HARAG_PORT"] == port
            assert port in COMPOSE["services"][host]["expose"]


def test_the_models_overlay_points_the_primaries_at_model_servers_in_a_profile():
    from embedder_svc.settings import EmbedderConfig
    from generator_svc.settings import GeneratorConfig
    from servicekit.settings import settings_of

    services = MODELS["services"]
    assert services["embedding-server"]["profiles"] == ["models"]
    assert services["model-server"]["profiles"] == ["models"]
    assert "profiles" not in services["embedder-primary"], "the mesh itself is never profiled"
    embedder = services["embedder-primary"]["environment"]
    known = {s.env_var for s in settings_of(EmbedderConfig)}
    assert {k for k in embedder if k.startswith("HARAG_")} - known == set()
    tei = services["embedding-server"]
    port = next(a.split("=")[1] for a in tei["command"] if a.startswith("--port="))
    assert embedder["HARAG_EMBEDDER_OPENAI_BASE_URL"] == f"http://embedding-server:{port}/v1"
    served = next(a.split("=")[1] for a in tei["command"] if a.startswith("--served-model-name="))
    assert embedder["HARAG_EMBEDDER_OPENAI_MODEL"] == served
    assert embedder["HARAG_EMBEDDER_BACKEND"] == "openai" and embedder["HARAG_DIMENSION"] == "384"
    generator = services["generator-primary"]["environment"]
    known = {s.env_var for s in settings_of(GeneratorConfig)}
    assert {k for k in generator if k.startswith("HARAG_")} - known == set()
    assert generator["HARAG_OPENAI_BASE_URL"].startswith("http://model-server:8000/")
    depends = services["embedder-primary"]["depends_on"]
    assert depends["embedding-server"] == {"condition": "service_healthy"}
    # no API key in the file: keyless servers; a hosted provider's key comes from a file
    text = COMPOSE_MODELS.read_text()
    assert "API_KEY:" not in text and "sk-" not in text
