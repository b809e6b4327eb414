"""Each image holds only the paths the Dockerfile COPYs; its service must run from exactly those.

For every image, the paths its builder stage copies (read from deploy/Dockerfile with the
image's build args) are copied into a temporary tree, and a fresh interpreter that sees only
that tree and the third-party packages imports every module in it and every first-party
module any of them imports, at the top or inside a function. `python -S` skips site.py, so
the `.pth` file of the project's editable install (which would quietly supply any missing
package from the checkout) is never read; the third-party site-packages directory is put
on PYTHONPATH by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from deploy_support import REPO, SERVICES, Service, copied_sources
from setuptools import find_namespace_packages, find_packages

IMAGES = [s for s in SERVICES if s.impl in (None, "primary")]
# Every top-level package of this repository: an import of one of them must come from the tree.
FIRST_PARTY = sorted(
    p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() or p.name == "tests"
)

CHECK = """
import ast, importlib, sys
from pathlib import Path

tree, first_party = Path(sys.argv[1]), set(sys.argv[2].split(","))
problems = []


def attempt(name, member=None):
    try:
        module = importlib.import_module(name)
        if member is not None and not hasattr(module, member):
            importlib.import_module(f"{name}.{member}")  # `from package import submodule`
    except Exception as exc:
        problems.append(f"{name}{'' if member is None else ' -> ' + member}: "
                        f"{type(exc).__name__}: {exc}")


for path in sorted(tree.rglob("*.py")):
    parts = path.relative_to(tree).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    if not parts:
        continue
    attempt(".".join(parts))
    module_ast = ast.parse(path.read_text(), str(path))
    # Imports under `if TYPE_CHECKING:` never run (harag/__init__.py names the client's
    # modules there for type checkers only).
    typing_only = {
        id(inner)
        for node in ast.walk(module_ast)
        if isinstance(node, ast.If)
        and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(module_ast):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in first_party:
                    attempt(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in first_party:
                for alias in node.names:
                    attempt(node.module, None if alias.name == "*" else alias.name)

for name, module in sorted(sys.modules.items()):
    origin = getattr(module, "__file__", None) or ""
    if name.split(".")[0] in first_party and origin and not origin.startswith(str(tree)):
        problems.append(f"{name}: loaded from {origin}, outside the image tree")

print("\\n".join(problems))
sys.exit(1 if problems else 0)
"""


def image_tree(service: Service, root: Path) -> Path:
    """The repository paths the image's Dockerfile copies, copied under `root`."""
    for source in copied_sources(service):
        origin, target = REPO / source, root / source.rstrip("/")
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    return root


def check_imports(tree: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    script = workdir / "check_imports.py"
    script.write_text(CHECK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), sysconfig.get_paths()["purelib"]])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-S", str(script), str(tree), ",".join(FIRST_PARTY)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("service", IMAGES, ids=lambda s: s.image)
def test_the_service_imports_from_exactly_what_its_image_copies(service, tmp_path):
    tree = image_tree(service, tmp_path / "image")
    result = check_imports(tree, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tree / service.package / "__main__.py").is_file()


@pytest.mark.parametrize("service", IMAGES, ids=lambda s: s.image)
def test_the_install_in_the_image_packages_everything_copied_and_nothing_else(service, tmp_path):
    """`pip install .` in the builder stage runs pyproject's package discovery over the
    copied tree: every copied package must be found (or the image would lack it), and the
    operator tooling, not being copied, is not installed."""
    tree = image_tree(service, tmp_path / "image")
    find = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    options = find["find"]
    finder = find_namespace_packages if options.get("namespaces", True) else find_packages
    found = set(finder(where=str(tree), include=options.get("include", ("*",))))
    holding_code = {
        ".".join(p.parent.relative_to(tree).parts) for p in tree.rglob("*.py") if p.parent != tree
    }
    assert holding_code <= found, holding_code - found
    assert {p.split(".")[0] for p in found} == {"harag", "servicekit", service.package}


def test_an_import_the_image_does_not_copy_is_caught(tmp_path):
    """The check is not fooled by the checkout: a tree that lacks servicekit fails, and so
    does a module that imports the operator tooling inside a function."""
    gateway = next(s for s in IMAGES if s.impl is None)
    tree = image_tree(gateway, tmp_path / "image")
    (tree / "gateway" / "late.py").write_text(
        "def tooling() -> None:\n    from harag_cli import main  # noqa: F401\n"
    )
    result = check_imports(tree, tmp_path)
    assert result.returncode == 1 and "harag_cli" in result.stdout, result.stdout

    (tree / "gateway" / "late.py").unlink()
    shutil.rmtree(tree / "servicekit")
    result = check_imports(tree, tmp_path)
    assert result.returncode == 1 and "No module named 'servicekit'" in result.stdout
