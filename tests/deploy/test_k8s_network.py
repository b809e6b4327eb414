"""NetworkPolicies, and the gateway's upstream config against the Services it names."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_support import (
    COMPONENT_SERVICES,
    GATEWAY_CONFIG,
    GATEWAY_CONFIG_MOUNT,
    K8S,
    build_kustomization,
    container_env,
    find,
    main_container,
    named_port,
    workload,
)

BASE = build_kustomization(K8S)
POLICIES = [r for r in BASE if r["kind"] == "NetworkPolicy"]
GATEWAY_PEER = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}


def pod_labels(name: str) -> dict[str, str]:
    return workload(BASE, name)["spec"]["template"]["metadata"]["labels"]


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return selector.get("matchLabels", {}).items() <= labels.items()


def rules(labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    policy_type, key = {"ingress": ("Ingress", "ingress"), "egress": ("Egress", "egress")}[
        direction
    ]
    return [
        rule
        for policy in POLICIES
        if selects(policy, labels) and policy_type in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get(key, [])
    ]


def opens_port(rule: dict[str, Any], port: int, named: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") in (port, named) for p in ports)


def test_everything_is_denied_unless_allowed():
    deny = find(BASE, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("service", COMPONENT_SERVICES, ids=lambda s: s.name)
def test_components_accept_grpc_only_from_the_gateway(service):
    labels = pod_labels(service.name)
    port = named_port(main_container(workload(BASE, service.name)), "grpc")
    ingress = [r for r in rules(labels, "ingress") if opens_port(r, port, "grpc")]
    assert ingress, f"{service.name} is not covered by an ingress allow-list"
    for rule in ingress:
        # An empty or missing `from` would admit every source.
        assert rule.get("from") and all(peer == GATEWAY_PEER for peer in rule["from"]), rule
    # The gateway, in turn, may call it.
    egress = rules(pod_labels("gateway"), "egress")
    assert any(
        opens_port(r, port, "grpc")
        and {"podSelector": {"matchLabels": {"app.kubernetes.io/name": service.name}}} in r["to"]
        for r in egress
        if r.get("to")
    )


@pytest.mark.parametrize("name", ["gateway", *[s.name for s in COMPONENT_SERVICES]])
def test_everyone_may_reach_the_trace_collector_and_dns(name):
    egress = rules(pod_labels(name), "egress")
    jaeger = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "jaeger"}}}
    assert any(jaeger in r.get("to", []) and opens_port(r, 4317, "otlp-grpc") for r in egress)
    assert any(opens_port(r, 53, "dns") for r in egress if r.get("to"))
    collector = [r for r in rules(pod_labels("jaeger"), "ingress") if opens_port(r, 4317, "")]
    assert any({"podSelector": {}} in r.get("from", []) for r in collector)


def test_the_gateway_is_reachable_by_clients():
    port = named_port(main_container(workload(BASE, "gateway")), "grpc")
    assert any(opens_port(r, port, "grpc") for r in rules(pod_labels("gateway"), "ingress"))


def test_the_admin_port_is_open_to_operator_pods_only_and_not_on_the_public_service():
    container = main_container(workload(BASE, "gateway"))
    port = named_port(container, "admin")
    assert int(container_env(container)["HARAG_ADMIN_PORT"]) == port
    admin_rules = [
        r for r in rules(pod_labels("gateway"), "ingress") if opens_port(r, port, "admin")
    ]
    assert admin_rules
    operator = {"podSelector": {"matchLabels": {"harag.dev/operator": "true"}}}
    for rule in admin_rules:
        # An empty or missing `from` would admit every client.
        assert rule.get("from") and all(peer == operator for peer in rule["from"]), rule
    public = find(BASE, "Service", "gateway")["spec"]["ports"]
    assert all(p["targetPort"] != "admin" and p["port"] != port for p in public)
    [admin_port] = find(BASE, "Service", "gateway-admin")["spec"]["ports"]
    assert admin_port["targetPort"] == "admin"


def test_the_gateway_requires_keys_from_a_whole_secret_volume():
    """A `subPath` mount is a copy that never updates: a rotated key would never be seen."""
    gateway = workload(BASE, "gateway")
    container = main_container(gateway)
    env = container_env(container)
    assert env["HARAG_AUTH_ENABLED"] == "true"
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    key_file = env["HARAG_AUTH_KEY_FILE"]
    [mount] = [
        m
        for m in container["volumeMounts"]
        if key_file.startswith(m["mountPath"] + "/") and "secret" in volumes[m["name"]]
    ]
    assert "subPath" not in mount and mount["readOnly"] is True


def gateway_config() -> dict[str, Any]:
    return yaml.safe_load(GATEWAY_CONFIG.read_text())


def test_the_configmap_carries_the_config_file_the_gateway_reads():
    configmap = find(BASE, "ConfigMap", "gateway-config")
    gateway = workload(BASE, "gateway")
    volumes = {
        v["name"]: v["configMap"]["name"]
        for v in gateway["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    }
    mounts = {m["mountPath"]: m["name"] for m in main_container(gateway)["volumeMounts"]}
    directory, _, filename = GATEWAY_CONFIG_MOUNT.rpartition("/")
    assert volumes[mounts[directory]] == "gateway-config"
    assert yaml.safe_load(configmap["data"][filename]) == gateway_config()
    assert container_env(main_container(gateway))["HARAG_CONFIG"] == GATEWAY_CONFIG_MOUNT


@pytest.mark.parametrize("component", ["embedder", "retriever", "generator"])
def test_chains_name_the_services_in_tier_order(component):
    chain = gateway_config()[f"{component}_chain"]
    entries = [entry.split("=") for entry in chain.split(",")]
    assert [name for name, _ in entries] == [f"{component}-primary", f"{component}-fallback"]
    for name, address in entries:
        host, _, port = address.removeprefix("dns:///").rpartition(":")
        assert host == name, "upstreams are addressed by their Service DNS name"
        service_port = [
            p for p in find(BASE, "Service", name)["spec"]["ports"] if p["name"] == "grpc"
        ]
        assert service_port[0]["port"] == int(port)
        assert container_env(main_container(workload(BASE, name)))["HARAG_PORT"] == port


def test_the_config_file_is_valid_for_the_gateway():
    from gateway.config import GatewayConfig
    from servicekit.config import load_config

    loaded = load_config(GatewayConfig, config_file=GATEWAY_CONFIG, env={})
    for component in ("embedder", "retriever", "generator"):
        assert len(loaded.config.chains.specs(component)) == 2
    for key in gateway_config():
        assert loaded.source(key).startswith("file"), key


@pytest.mark.parametrize("component", ["embedder", "generator"])
def test_stateless_components_are_headless_and_balanced_over_every_pod(component):
    """A ClusterIP would pin each gateway connection to one pod; a headless Service's DNS
    answer is every ready pod, which the gateway's dns:/// + round_robin spreads calls over."""
    chain = gateway_config()[f"{component}_chain"]
    for name, address in (entry.split("=") for entry in chain.split(",")):
        assert address.startswith("dns:///"), address
        assert find(BASE, "Service", name)["spec"].get("clusterIP") == "None"


def test_retrievers_are_not_balanced_each_pod_keeps_its_own_index():
    chain = gateway_config()["retriever_chain"]
    assert "dns:///" not in chain and "|" not in chain
