"""Policy over the rendered Kubernetes manifests: probes, resources, security, availability."""

from __future__ import annotations

import pytest
from deploy_support import (
    COMPONENT_SERVICES,
    GATEWAY,
    GPU_OVERLAY,
    K8S,
    SERVICES,
    UID,
    all_containers,
    build_kustomization,
    container_env,
    cpu_millis,
    find,
    main_container,
    memory_bytes,
    named_port,
    project_version,
    workload,
    workloads,
)

BASE = build_kustomization(K8S)
GPU = build_kustomization(GPU_OVERLAY)
RENDERINGS = {"base": BASE, "gpu-overlay": GPU}
NAMES = [s.name for s in SERVICES]


@pytest.mark.parametrize("name", NAMES)
def test_each_service_has_workload_service_and_service_account(name):
    resource = workload(BASE, name)
    pod = resource["spec"]["template"]["spec"]
    labels = resource["spec"]["template"]["metadata"]["labels"]
    assert resource["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find(BASE, "Service", name)
    assert service["spec"]["selector"].items() <= labels.items()
    grpc_ports = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert len(grpc_ports) == 1 and grpc_ports[0]["targetPort"] == "grpc"
    assert grpc_ports[0]["port"] == named_port(main_container(resource), "grpc")
    account = find(BASE, "ServiceAccount", name)
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == name and pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("name", NAMES)
def test_three_grpc_probes_on_the_served_port(rendering, name):
    container = main_container(workload(RENDERINGS[rendering], name))
    env = container_env(container)
    assert int(env["HARAG_PORT"]) == named_port(container, "grpc")
    # Components serve mTLS on the gRPC port, so their probes go to the plaintext health
    # port (kubelet probes carry no TLS); the same servicer answers there.
    port = named_port(container, "health" if "HARAG_HEALTH_PORT" in env else "grpc")
    if "HARAG_HEALTH_PORT" in env:
        assert int(env["HARAG_HEALTH_PORT"]) == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container[probe]
        assert set(spec) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert spec["grpc"]["port"] == port and spec["grpc"].get("service", "") == ""
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    # Readiness reacts within one period; liveness only restarts a process wedged for a while.
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 10
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_container_has_requests_and_limits(rendering):
    for resource in workloads(RENDERINGS[rendering]):
        for container in all_containers(resource):
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                if kind == "cpu":
                    assert 0 < cpu_millis(request) <= cpu_millis(limit), container["name"]
                else:
                    assert 0 < memory_bytes(request) <= memory_bytes(limit), container["name"]


def test_resources_differ_per_service_and_primaries_get_the_most_cpu():
    cpu = {
        name: cpu_millis(main_container(workload(BASE, name))["resources"]["limits"]["cpu"])
        for name in NAMES
    }
    sized = {
        name: tuple(sorted(main_container(workload(BASE, name))["resources"]["requests"].items()))
        for name in NAMES
    }
    assert len(set(sized.values())) > 3, "resources should reflect each service's needs"
    top = max(cpu.values())
    assert cpu["embedder-primary"] == cpu["generator-primary"] == top
    for component in ("embedder", "retriever", "generator"):
        for kind in ("cpu", "memory"):
            limits = {
                impl: main_container(workload(BASE, f"{component}-{impl}"))["resources"]["limits"]
                for impl in ("primary", "fallback")
            }
            size = cpu_millis if kind == "cpu" else memory_bytes
            assert size(limits["primary"][kind]) > size(limits["fallback"][kind])


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_restricted_security_context_everywhere(rendering):
    for resource in workloads(RENDERINGS[rendering]):
        pod = resource["spec"]["template"]["spec"]
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == UID
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        writable = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        writable |= {
            c["metadata"]["name"] for c in resource["spec"].get("volumeClaimTemplates", [])
        }
        for container in all_containers(resource):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, container["name"]
            assert sc["readOnlyRootFilesystem"] is True, container["name"]
            assert sc["runAsNonRoot"] is True, container["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", container["name"]
            assert not sc.get("privileged"), container["name"]
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            # A read-only root needs somewhere to write temporary files.
            assert mounts.get("/tmp") in writable, container["name"]


def test_namespace_enforces_the_restricted_pod_security_standard():
    labels = find(BASE, "Namespace", "ha-rag")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_gateway_runs_at_least_two_replicas_with_a_cpu_autoscaler():
    assert workload(BASE, "gateway")["spec"]["replicas"] >= 2
    hpa = find(BASE, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert (
        hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    )
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


def test_a_disruption_budget_for_every_replicated_workload():
    budgets = {r["metadata"]["name"]: r for r in BASE if r["kind"] == "PodDisruptionBudget"}
    replicated = {r["metadata"]["name"] for r in workloads(BASE) if r["spec"]["replicas"] > 1}
    assert replicated >= {"gateway"} and set(budgets) == replicated
    for name in replicated:
        labels = workload(BASE, name)["spec"]["template"]["metadata"]["labels"]
        spec = budgets[name]["spec"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        assert spec.get("maxUnavailable") == 1 or 0 < spec.get("minAvailable", 0) < 2


@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("name", NAMES)
def test_termination_grace_outlasts_drain_plus_grace(rendering, name):
    pod = workload(RENDERINGS[rendering], name)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = container_env(container)
    drain, grace = float(env["HARAG_SHUTDOWN_DRAIN_S"]), float(env["HARAG_SHUTDOWN_GRACE_S"])
    # Readiness must have time to flip and endpoints to be removed before the server stops.
    assert drain >= container["readinessProbe"]["periodSeconds"]
    # Room beyond drain + grace for shutdown hooks and the final trace flush before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= drain + grace + 10


def test_gateway_grace_covers_a_query_that_runs_to_the_default_deadline():
    from gateway.config import GatewayConfig
    from servicekit.config import load_config

    for rendering in RENDERINGS.values():
        env = container_env(main_container(workload(rendering, "gateway")))
        cfg = load_config(
            GatewayConfig,
            config_file=None,
            env={**env, "HARAG_CONFIG": str(K8S / "config" / "gateway.yaml")},
        ).config
        assert cfg.server.shutdown_grace_s >= cfg.deadlines.default_deadline_s


@pytest.mark.parametrize("service", COMPONENT_SERVICES, ids=lambda s: s.name)
def test_retrievers_are_statefulsets_with_their_index_on_a_volume(service):
    resource = workload(BASE, service.name)
    container = main_container(resource)
    if service.component != "retriever":
        assert resource["kind"] == "Deployment"
        assert "HARAG_DATA_DIR" not in container_env(container)
        return
    assert resource["kind"] == "StatefulSet" and resource["spec"]["replicas"] == 1
    [claim] = resource["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == container_env(container)["HARAG_DATA_DIR"]


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_images_are_pinned(rendering):
    for resource in workloads(RENDERINGS[rendering]):
        for container in all_containers(resource):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest", image
            if name.startswith("ha-rag/"):
                assert tag == project_version(), image
            if name == "jaegertracing/jaeger":
                assert tag.startswith("2."), "Jaeger v2 ingests OTLP natively"


@pytest.mark.parametrize("name", NAMES)
def test_traces_go_to_jaeger_under_the_service_name(name):
    env = container_env(main_container(workload(BASE, name)))
    assert env["OTEL_SERVICE_NAME"] == name
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    jaeger = find(BASE, "Service", "jaeger")
    assert {"port": 4317, "name": "otlp-grpc"}.items() <= jaeger["spec"]["ports"][0].items()


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_fault_injection_is_off_and_impl_is_chosen_by_flag(rendering):
    for service in COMPONENT_SERVICES:
        container = main_container(workload(RENDERINGS[rendering], service.name))
        env = container_env(container)
        assert env["HARAG_FAULT_INJECTION"] == "false"
        # The image's CMD passes --impl, and a flag beats HARAG_IMPL: set the flag, not the env.
        assert container["args"] == ["--impl", service.impl] and "HARAG_IMPL" not in env
    assert "args" not in main_container(workload(RENDERINGS[rendering], GATEWAY.name))


def test_gpu_overlay_runs_generator_primary_next_to_a_model_server_on_a_gpu_node():
    resource = workload(GPU, "generator-primary")
    pod = resource["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    [sidecar] = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar starts first and stops last"
    assert sidecar["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(sidecar)
    env = container_env(main_container(resource))
    model_port = named_port(sidecar, "openai")
    assert env["HARAG_OPENAI_BASE_URL"] == f"http://127.0.0.1:{model_port}/v1"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert {r["metadata"]["name"] for r in GPU if r["kind"] == "PersistentVolumeClaim"} >= claims
    # Everything else is the base, unchanged.
    for name in NAMES:
        if name not in ("generator-primary", "embedder-primary", "gateway"):
            assert workload(GPU, name) == workload(BASE, name)


def test_overlay_gateway_env_names_are_gateway_settings():
    known = {setting.env_var for setting in GATEWAY.settings()} | {"HARAG_CONFIG"}
    env = container_env(main_container(workload(GPU, "gateway")))
    assert {name for name in env if name.startswith("HARAG_")} - known == set()


def test_overlay_generator_env_names_are_what_the_generator_reads():
    from generator_svc.service import API_KEY_VARIABLE
    from generator_svc.settings import GeneratorConfig
    from servicekit.settings import settings_of

    known = {s.env_var for s in settings_of(GeneratorConfig)} | {"HARAG_CONFIG", API_KEY_VARIABLE}
    resource = workload(GPU, "generator-primary")
    env = container_env(main_container(resource))
    assert {name for name in env if name.startswith("HARAG_")} - known == set()
    assert env["HARAG_BACKEND"] == "openai"
    # the API key file sits where the (optional) provider Secret is mounted
    mounts = {m["name"]: m["mountPath"] for m in main_container(resource)["volumeMounts"]}
    assert env["HARAG_OPENAI_API_KEY_FILE"].startswith(mounts["provider-key"] + "/")
    [volume] = [
        v for v in resource["spec"]["template"]["spec"]["volumes"] if v["name"] == "provider-key"
    ]
    assert volume["secret"]["optional"] is True


def test_gpu_overlay_points_embedder_primary_at_a_tei_sidecar_with_settings_it_reads():
    from embedder_svc.settings import EmbedderConfig
    from servicekit.settings import settings_of

    resource = workload(GPU, "embedder-primary")
    pod = resource["spec"]["template"]["spec"]
    [sidecar] = pod["initContainers"]
    assert "text-embeddings-inference" in sidecar["image"]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar starts first and stops last"
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(sidecar)
    assert "nodeSelector" not in pod, "e5-small runs on CPU: no GPU node needed"
    container = main_container(resource)
    env = container_env(container)
    known = {s.env_var for s in settings_of(EmbedderConfig)} | {"HARAG_CONFIG"}
    assert {name for name in env if name.startswith("HARAG_")} - known == set()
    assert env["HARAG_EMBEDDER_BACKEND"] == "openai"
    assert env["HARAG_EMBEDDER_OPENAI_BASE_URL"] == (
        f"http://127.0.0.1:{named_port(sidecar, 'embeddings')}/v1"
    )
    served = [a.split("=", 1)[1] for a in sidecar["args"] if a.startswith("--served-model-name=")]
    assert served == [env["HARAG_EMBEDDER_OPENAI_MODEL"]]
    assert (
        env["HARAG_DIMENSION"] == "384" and env["HARAG_EMBEDDER_OPENAI_INPUT_TYPE"] == "e5-prefix"
    )
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["HARAG_EMBEDDER_OPENAI_API_KEY_FILE"].startswith(
        mounts["embedding-provider-key"] + "/"
    )
    [key] = [v for v in pod["volumes"] if v["name"] == "embedding-provider-key"]
    assert key["secret"] == {
        "secretName": "embedder-provider",
        "optional": True,
        "defaultMode": 0o440,
    }
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"embedder-model-weights"}
    assert "embedder-model-weights" in {
        r["metadata"]["name"] for r in GPU if r["kind"] == "PersistentVolumeClaim"
    }
