"""Compose and Kubernetes run the same thing: images, commands, ports, env, resources.

Differences are allowed only where the platforms differ, and each is listed with its reason.
"""

from __future__ import annotations

import pytest
from deploy_support import (
    K8S,
    SERVICES,
    build_kustomization,
    compose_env,
    container_env,
    cpu_millis,
    load_compose,
    main_container,
    memory_bytes,
    metrics_port,
    workload,
)

COMPOSE = load_compose()
K8S_RESOURCES = build_kustomization(K8S)
ALLOWED_VALUE_DIFFERENCES = {
    # Kubernetes must wait for endpoint removal to reach every client; compose has no LB.
    "HARAG_SHUTDOWN_DRAIN_S",
    # Names the platform in traces.
    "OTEL_RESOURCE_ATTRIBUTES",
}
# Settings read by servicekit.config itself rather than declared by a service.
LOADER_VARIABLES = {"HARAG_CONFIG"}


def pair(name: str) -> tuple[dict, dict]:
    return COMPOSE["services"][name], main_container(workload(K8S_RESOURCES, name))


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_same_image_and_command(service):
    compose, k8s = pair(service.name)
    assert compose["image"] == k8s["image"]
    assert compose.get("command") == k8s.get("args")
    assert "entrypoint" not in compose and "command" not in k8s, "the image's ENTRYPOINT runs"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_same_ports(service):
    compose, k8s = pair(service.name)
    port = int(compose_env(COMPOSE, service.name)["HARAG_PORT"])
    assert int(container_env(k8s)["HARAG_PORT"]) == port
    assert int(container_env(k8s)["HARAG_METRICS_PORT"]) == metrics_port(port)
    assert sorted(int(p) for p in compose["expose"]) == sorted(
        p["containerPort"] for p in k8s["ports"]
    )


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_same_env_names_and_values(service):
    compose, k8s = compose_env(COMPOSE, service.name), container_env(pair(service.name)[1])
    assert set(compose) == set(k8s)
    differing = {k for k in compose if compose[k] != k8s[k]}
    assert differing <= ALLOWED_VALUE_DIFFERENCES, {k: (compose[k], k8s[k]) for k in differing}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_env_names_are_settings_the_service_declares(service):
    """An unknown HARAG_* variable is silently ignored by the loader, so a typo would go unseen."""
    known = {setting.env_var for setting in service.settings()} | LOADER_VARIABLES
    env = compose_env(COMPOSE, service.name)
    unknown = {k for k in env if k.startswith("HARAG_")} - known
    assert not unknown, f"{service.name} declares no setting for {sorted(unknown)}"
    assert "HARAG_IMPL" not in env, "--impl in command/args selects the implementation"
    if service.impl is not None:
        assert COMPOSE["services"][service.name]["command"] == ["--impl", service.impl]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_same_resources(service):
    compose, k8s = pair(service.name)
    resources = compose["deploy"]["resources"]
    for compose_side, k8s_side in (("limits", "limits"), ("reservations", "requests")):
        assert cpu_millis(resources[compose_side]["cpus"]) == cpu_millis(
            k8s["resources"][k8s_side]["cpu"]
        )
        assert memory_bytes(resources[compose_side]["memory"]) == memory_bytes(
            k8s["resources"][k8s_side]["memory"]
        )


def test_same_jaeger():
    compose, k8s = pair("jaeger")
    assert compose["image"] == k8s["image"]
    assert {int(p.split(":")[-1].split()[0]) for p in compose["ports"]} <= {
        p["containerPort"] for p in k8s["ports"]
    }
