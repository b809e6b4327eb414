"""The Milvus deployment: the k8s overlay and the compose overlay, validated statically."""

from __future__ import annotations

import yaml
from deploy_support import DEPLOY, build_kustomization, find, load_compose, validate_strict

from retriever_svc.settings import SETTINGS

MILVUS_OVERLAY = DEPLOY / "overlays" / "milvus"
COMPOSE_MILVUS = DEPLOY / "compose.milvus.yaml"
RETRIEVER_KEYS = {f"HARAG_{s.key.upper()}" for s in SETTINGS}


def retriever_env(resources: list[dict]) -> dict[str, str]:
    pod = find(resources, "StatefulSet", "retriever-primary")["spec"]["template"]["spec"]
    return {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}


def test_the_overlay_validates_strictly_and_points_the_primary_retriever_at_milvus():
    resources = build_kustomization(MILVUS_OVERLAY)
    for resource in resources:
        validate_strict(resource)
    env = retriever_env(resources)
    assert env["HARAG_VECTOR_BACKEND"] == "milvus"
    assert env["HARAG_MILVUS_URI"].startswith("http://milvus.milvus.svc")
    milvus_env = {k for k in env if k.startswith("HARAG_MILVUS")}
    assert milvus_env <= RETRIEVER_KEYS, milvus_env - RETRIEVER_KEYS  # every one a setting
    # The password comes from the Secret, mounted where the setting says; never a value.
    assert "HARAG_MILVUS_PASSWORD" not in env
    pod = find(resources, "StatefulSet", "retriever-primary")["spec"]["template"]["spec"]
    secret = next(v for v in pod["volumes"] if v["name"] == "milvus-credentials")
    assert find(resources, "Secret", secret["secret"]["secretName"])
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == secret["name"])
    assert env["HARAG_MILVUS_PASSWORD_FILE"].startswith(mount["mountPath"] + "/")
    # The fallback retriever stays embedded: a Milvus outage still leaves BM25.
    fallback = find(resources, "StatefulSet", "retriever-fallback")["spec"]["template"]["spec"]
    assert not any(e["name"].startswith("HARAG_MILVUS") for e in fallback["containers"][0]["env"])
    egress = find(resources, "NetworkPolicy", "retriever-primary-to-milvus")["spec"]["egress"]
    assert egress[0]["ports"] == [{"port": 19530, "protocol": "TCP"}]


def test_the_helm_values_ask_for_a_distributed_cluster_with_authentication():
    values = yaml.safe_load((MILVUS_OVERLAY / "milvus-values.yaml").read_text())
    assert values["cluster"]["enabled"] is True
    assert "authorizationEnabled: true" in values["extraConfigFiles"]["user.yaml"]


def test_the_compose_overlay_adds_milvus_and_the_retriever_waits_for_it():
    compose = load_compose(COMPOSE_MILVUS)
    retriever = compose["services"]["retriever-primary"]
    assert retriever["environment"]["HARAG_VECTOR_BACKEND"] == "milvus"
    assert retriever["environment"]["HARAG_MILVUS_URI"] == "http://milvus:19530"
    assert retriever["depends_on"]["milvus"] == {"condition": "service_healthy"}
    assert set(retriever["environment"]) <= RETRIEVER_KEYS | {
        k for k in retriever["environment"] if not k.startswith("HARAG_")
    } | set(load_compose()["services"]["retriever-primary"]["environment"])
    assert "milvus" not in compose["services"]["retriever-fallback"].get("depends_on", {})
