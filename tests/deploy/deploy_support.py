"""What the deployment tests share: the service table, and loaders for the deploy artefacts.

There is no Docker engine, kubectl or kustomize in the test environment, so this module reads
the artefacts the way those tools would: Dockerfiles instruction by instruction, compose files
with YAML merge keys and `-f` overlay merging, and kustomizations with exactly the features
deploy/k8s uses (anything else fails loudly rather than being ignored).
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from crd_schemas import SCHEMAS
from kubernetes_validate import utils as kv

from servicekit.ports import COMPONENT_PORTS, GATEWAY_PORT

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
GPU_OVERLAY = DEPLOY / "overlays" / "gpu"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CHAOS = DEPLOY / "compose.chaos.yaml"
GATEWAY_CONFIG = K8S / "config" / "gateway.yaml"
# The one Dockerfile every image is built from, with build args per service.
DOCKERFILE = DEPLOY / "Dockerfile"

# The Kubernetes version the manifests are validated against; kubernetes-validate ships its
# schemas offline (pinned package version), so nothing is downloaded at test time.
K8S_VERSION = "1.37.0"
# In-container paths of the deployed config.
GATEWAY_CONFIG_MOUNT = "/etc/harag/gateway.yaml"
UID = 10001


@dataclass(frozen=True)
class Service:
    """One deployable process. Its name is the compose service, the Kubernetes workload,
    Service and ServiceAccount, the gateway's upstream name and OTEL_SERVICE_NAME."""

    name: str
    package: str  # `python -m <package>`
    component: str
    impl: str | None  # None for the gateway, which has one implementation

    def build_args(self) -> dict[str, str]:
        """The build args compose builds this service's image with (from DOCKERFILE)."""
        build = load_compose()["services"][self.name]["build"]
        return {key: str(value) for key, value in build.get("args", {}).items()}

    def image_stages(self) -> list[list[Instruction]]:
        """The build stages of this service's image: DOCKERFILE with its build args."""
        return parse_dockerfile(DOCKERFILE, self.build_args())

    @property
    def image(self) -> str:
        return f"ha-rag/{self.component}"

    def default_port(self) -> int:
        """The port the service defaults to (declared once, in servicekit.ports)."""
        if self.impl is None:
            return GATEWAY_PORT
        return COMPONENT_PORTS[self.component][self.impl]

    def settings(self) -> list[Any]:
        module = "gateway.config" if self.impl is None else f"{self.package}.settings"
        return importlib.import_module(module).SETTINGS


COMPONENT_SERVICES = [
    Service(f"{component}-{impl}", f"{component}_svc", component, impl)
    for component in ("embedder", "retriever", "generator")
    for impl in ("primary", "fallback")
]
GATEWAY = Service("gateway", "gateway", "gateway", None)
SERVICES = [GATEWAY, *COMPONENT_SERVICES]
PACKAGES = sorted({s.package for s in SERVICES})


def project_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def metrics_port(grpc_port: int) -> int:
    return grpc_port + 1000


# --- Dockerfiles -------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


# Where Docker substitutes build args: the instructions it expands variables in, plus RUN,
# whose shell sees a stage's ARGs as environment variables. Exec-form ENTRYPOINT, CMD and
# HEALTHCHECK are taken literally.
_EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
             "WORKDIR", "RUN"}  # fmt: skip
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def declared_args(path: Path) -> dict[str, str | None]:
    """Every ARG the Dockerfile declares, with its default (None: no default)."""
    declared: dict[str, str | None] = {}
    for stage in parse_dockerfile(path):
        for instruction in stage:
            if instruction.keyword == "ARG":
                name, sep, default = instruction.args.partition("=")
                declared[name] = default if sep else None
    return declared


def parse_dockerfile(
    path: Path, build_args: dict[str, str] | None = None
) -> list[list[Instruction]]:
    """Instructions per build stage, continuation lines joined, comments dropped.

    With `build_args`, `$NAME` / `${NAME}` of an ARG declared in the stage are replaced as
    Docker would: by the given value, else the ARG's default, else nothing. Without, the
    instructions are returned as written.
    """
    stages: list[list[Instruction]] = []
    in_scope: dict[str, str] = {}
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
            in_scope = {}  # a stage sees only the ARGs it declares itself
        if build_args is not None:
            if instruction.keyword == "ARG":
                name, sep, default = instruction.args.partition("=")
                in_scope[name] = build_args.get(name, default if sep else "")
            elif instruction.keyword in _EXPANDED:
                instruction = Instruction(instruction.keyword, _expand(instruction.args, in_scope))
        if not stages:
            raise AssertionError(f"{path}: {keyword} before the first FROM")
        stages[-1].append(instruction)
    return stages


def _expand(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values[name] if name in values else match.group(0)

    return _VARIABLE.sub(value, text)


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction; shell form is a failure."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {instruction.args!r}: use the key=value form"
                env[key] = value
    return env


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    _options, sep, command = only(stage, "HEALTHCHECK").args.partition("CMD ")
    assert sep, "HEALTHCHECK must have a CMD"
    return exec_form(command)


def copied_sources(service: Service) -> list[str]:
    """The repository paths the image's builder stage COPYs, as written (`dir/` for a tree)."""
    sources = []
    for instruction in service.image_stages()[0]:
        if instruction.keyword == "COPY" and not instruction.args.startswith("--"):
            sources += instruction.args.split()[:-1]
    return sources


def image_entrypoint(service: Service) -> list[str]:
    return exec_form(only(service.image_stages()[-1], "ENTRYPOINT").args)


def image_cmd(service: Service) -> list[str]:
    """The final stage's CMD; compose `command` and Kubernetes `args` replace it."""
    cmds = [i for i in service.image_stages()[-1] if i.keyword == "CMD"]
    return exec_form(cmds[-1].args) if cmds else []


# --- compose -----------------------------------------------------------------------------


def _merge(base: Any, override: Any) -> Any:
    """docker compose's `-f a -f b` merge for what our files use: mappings merge, sequences
    (ports, expose) append, scalars replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [v for v in override if v not in base]
    return override


def load_compose(*overlays: Path) -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    for overlay in overlays:
        document = _merge(document, yaml.safe_load(overlay.read_text()))
    return document


def compose_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    env = compose["services"][name].get("environment", {})
    assert isinstance(env, dict), f"{name}: environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


# --- Kubernetes --------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


_KUSTOMIZE_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "patches",
}


def _inside(path: Path, root: Path) -> Path:
    """kustomize's load restrictor: files come from within the kustomization's own root."""
    resolved = (root / path).resolve()
    assert resolved.is_relative_to(root), f"{path} is not in or below {root}"
    return resolved


def build_kustomization(directory: Path, visited: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """Renders a kustomization the way `kubectl apply -k` would, for the features we use."""
    directory = directory.resolve()
    # kustomize refuses a base that contains a kustomization already being built (an overlay
    # nested inside its own base): "cycle detected: candidate root ... contains visited root".
    for root in visited:
        assert not root.is_relative_to(directory), f"cycle: {directory} contains {root}"
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(spec) - _KUSTOMIZE_FIELDS
    assert not unsupported, f"{directory}: the test renderer does not handle {unsupported}"
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources += build_kustomization(target, (*visited, directory))
        else:
            resources += load_docs(_inside(Path(entry), directory))
    for generator in spec.get("configMapGenerator", []):
        data = {}
        for item in generator["files"]:
            key, _, source = item.partition("=") if "=" in item else ("", "", item)
            data[key or Path(source).name] = _inside(Path(source), directory).read_text()
        labels = generator.get("options", {}).get("labels", {})
        resources.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "labels": labels},
                "data": data,
            }
        )
    for patch in spec.get("patches", []):
        target = patch["target"]
        matches = [
            r
            for r in resources
            if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]
        ]
        assert len(matches) == 1, f"patch target {target} matches {len(matches)} resources"
        ops = yaml.safe_load(_inside(Path(patch["path"]), directory).read_text())
        index = resources.index(matches[0])
        resources[index] = apply_json_patch(matches[0], ops)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] != "Namespace":
                resource["metadata"]["namespace"] = spec["namespace"]
    return resources


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_json_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/replace/remove/test, which is what kustomize applies for such patches."""
    result = copy.deepcopy(document)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if isinstance(node, list):
            if kind == "add":
                node.insert(len(node) if last == "-" else int(last), op["value"])
            elif kind == "replace":
                node[int(last)] = op["value"]
            elif kind == "remove":
                del node[int(last)]
            elif kind == "test":
                assert node[int(last)] == op["value"], f"patch test failed at {op['path']}"
            else:
                raise AssertionError(f"unsupported op {kind}")
        elif kind in ("add", "replace"):
            assert kind == "add" or last in node, f"replace of a missing {op['path']}"
            node[last] = op["value"]
        elif kind == "remove":
            del node[last]
        elif kind == "test":
            assert node[last] == op["value"], f"patch test failed at {op['path']}"
        else:
            raise AssertionError(f"unsupported op {kind}")
    return result


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workload(resources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [
        r
        for r in resources
        if r["kind"] in ("Deployment", "StatefulSet") and r["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one Deployment/StatefulSet {name}, found {len(found)}"
    return found[0]


def workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in ("Deployment", "StatefulSet")]


def main_container(resource: dict[str, Any]) -> dict[str, Any]:
    """The ha-rag container of a workload (the first; sidecars come as init containers)."""
    return resource["spec"]["template"]["spec"]["containers"][0]


def all_containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    pod = resource["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet sets it (literal values, and CPU
    resource fields, e.g. HARAG_WORKERS from limits.cpu)."""
    env = {}
    for item in container.get("env", []):
        assert item["name"] not in env, f"env {item['name']} is set twice"
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item.get("valueFrom", {}).get("resourceFieldRef")
        assert ref, f"{item['name']}: only literal values and resource fields are used"
        env[item["name"]] = str(cpu_field(container, ref))
    return env


def cpu_field(container: dict[str, Any], ref: dict[str, Any]) -> int:
    """A resourceFieldRef on requests.cpu or limits.cpu: the kubelet rounds up to the divisor."""
    kind, _, resource = ref["resource"].partition(".")
    assert resource == "cpu" and kind in ("limits", "requests"), ref
    quantity = cpu_millis(container["resources"][kind]["cpu"])
    return math.ceil(quantity / cpu_millis(ref.get("divisor", "1")))


def named_port(container: dict[str, Any], name: str) -> int:
    ports = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == name]
    assert len(ports) == 1, f"container {container['name']} needs one port named {name}"
    return ports[0]


def cpu_millis(quantity: str | int | float) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 2**10, "M": 2**20, "G": 2**30}


def memory_bytes(quantity: str | int) -> int:
    """Kubernetes binary quantities (Mi, Gi) and compose's (M, G are binary in Docker)."""
    text = str(quantity)
    for suffix in sorted(_BINARY, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * _BINARY[suffix])
    return int(text)


def validate_strict(resource: dict) -> str:
    """Returns the schema version used; unknown kinds and unknown fields are failures.

    cert-manager's kinds are checked against tests/deploy/crd_schemas.py instead."""
    crd = SCHEMAS.get((resource["apiVersion"], resource["kind"]))
    if crd is not None:
        try:
            jsonschema.validate(resource, crd)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path)
            pytest.fail(
                f"{resource['kind']}/{resource['metadata']['name']}: {where}: {exc.message}"
            )
        return "cert-manager.io/v1"
    try:
        return kv.validate(resource, K8S_VERSION, strict=True)
    except kv.SchemaNotFoundError as exc:  # kubernetes-validate's CLI only warns about these
        pytest.fail(exc.message)
    except kv.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {where}: {exc.message}")
