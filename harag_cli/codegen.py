"""Regenerates the Python stubs in `harag/v1` from `protos/` (run via `make protos`).

A test calls `generate()` into a temporary folder and compares the result with the
committed stubs, so the stubs can never drift from the `.proto` files.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"
PACKAGE_DIR = "harag/v1"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Writes `<out_root>/harag/v1/*_pb2*.py(i)` and returns the written files."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    package = out_root / PACKAGE_DIR
    init = package / "__init__.py"
    init.write_text('"""Generated from protos/harag/v1 by `make protos`. Do not edit."""\n')
    return sorted(p for p in package.iterdir() if p.is_file())


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(PACKAGE_DIR)
    # The stubs import themselves as `harag.v1.*`, so generate at the root above `harag/`.
    root = target.resolve().parent.parent
    for path in generate(root):
        print(path.relative_to(root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
