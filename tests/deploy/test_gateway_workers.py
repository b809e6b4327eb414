"""The gateway's worker processes in Kubernetes: one per CPU of its limit, each scrapeable."""

from __future__ import annotations

import math

import pytest
from deploy_support import (
    GPU_OVERLAY,
    K8S,
    build_kustomization,
    container_env,
    cpu_millis,
    main_container,
    workload,
)

RENDERINGS = {"base": build_kustomization(K8S), "gpu-overlay": build_kustomization(GPU_OVERLAY)}


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_gateway_runs_one_worker_per_cpu_of_its_limit(rendering):
    container = main_container(workload(RENDERINGS[rendering], "gateway"))
    env = container_env(container)
    limit_millis = cpu_millis(container["resources"]["limits"]["cpu"])
    assert int(env["HARAG_WORKERS"]) == math.ceil(limit_millis / 1000)


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_worker_metrics_port_is_declared(rendering):
    container = main_container(workload(RENDERINGS[rendering], "gateway"))
    env = container_env(container)
    first = int(env["HARAG_METRICS_PORT"])
    declared = {p["containerPort"] for p in container["ports"]}
    wanted = {first + i for i in range(int(env["HARAG_WORKERS"]))}
    assert wanted <= declared, f"worker metrics ports not declared: {sorted(wanted - declared)}"
