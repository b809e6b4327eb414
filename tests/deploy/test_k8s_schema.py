"""Every Kubernetes manifest validates, strictly, against the pinned Kubernetes version."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml
from crd_schemas import SCHEMAS
from deploy_support import (
    GPU_OVERLAY,
    K8S,
    K8S_VERSION,
    build_kustomization,
    find,
    load_docs,
    validate_strict,
    workload,
)
from kubernetes_validate import utils as kv

from servicekit.ports import COMPONENT_NAMES

RENDERINGS = {"base": K8S, "gpu-overlay": GPU_OVERLAY}


def test_the_pinned_version_is_shipped_offline():
    assert K8S_VERSION in kv.all_versions()


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_rendered_resource_validates_strictly(rendering):
    resources = build_kustomization(RENDERINGS[rendering])
    assert len(resources) > 20
    for resource in resources:
        # Validated against exactly the pinned minor version, never an older fallback.
        assert validate_strict(resource) in (K8S_VERSION.rsplit(".", 1)[0], "cert-manager.io/v1")


def test_every_mesh_process_has_a_renewing_certificate_mounted_as_a_whole_secret():
    resources = build_kustomization(K8S)
    for name in ("gateway", *COMPONENT_NAMES):
        certificate = find(resources, "Certificate", f"{name}-tls")
        spec = certificate["spec"]
        assert f"{name}.harag.internal" in spec["dnsNames"] and name in spec["dnsNames"]
        assert _hours(spec["renewBefore"]) < _hours(spec["duration"])
        pod = workload(resources, name)["spec"]["template"]["spec"]
        [volume] = [
            v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == spec["secretName"]
        ]
        [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert "subPath" not in mount, "a subPath mount never sees a renewed Secret"


def _hours(duration: str) -> float:
    assert duration.endswith("h"), duration
    return float(duration[:-1])


def test_crd_schemas_reject_an_unknown_field():
    certificate = copy.deepcopy(find(build_kustomization(K8S), "Certificate", "gateway-tls"))
    certificate["spec"]["renewbefore"] = "1h"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(certificate, SCHEMAS[("cert-manager.io/v1", "Certificate")])


def test_strict_validation_rejects_an_unknown_field():
    deployment = copy.deepcopy(find(build_kustomization(K8S), "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_in_its_directory():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_overlay_patch_files_are_all_used():
    spec = yaml.safe_load((GPU_OVERLAY / "kustomization.yaml").read_text())
    used = {p["path"] for p in spec["patches"]} | {
        r for r in spec["resources"] if not r.startswith("..")
    }
    assert used == {p.name for p in GPU_OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}


def test_manifests_name_their_namespace_even_without_kustomize():
    # So `kubectl apply -f` of a single file lands in the same place as `apply -k`.
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    for path in [*K8S.glob("*.yaml"), *GPU_OVERLAY.glob("*.yaml")]:
        if path.name == "kustomization.yaml":
            continue
        for doc in load_docs(path):
            if isinstance(doc, dict) and doc.get("kind") not in (None, "Namespace"):
                assert doc["metadata"].get("namespace") == namespace, (path.name, doc["metadata"])


def test_the_renderer_rejects_an_overlay_nested_in_its_base(tmp_path):
    # kustomize refuses this layout ("cycle detected"), which is why the overlay is a sibling.
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    nested = tmp_path / "overlays" / "x"
    nested.mkdir(parents=True)
    (nested / "kustomization.yaml").write_text("resources: ['../..']\n")
    with pytest.raises(AssertionError, match="cycle"):
        build_kustomization(nested)
