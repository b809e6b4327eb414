"""The folder walk: which files of the given paths are documents, under which id.

Skipped, with the reason counted: hidden files and folders, node_modules, __pycache__,
virtual environments (a folder holding pyvenv.cfg), anything a .gitignore in the tree
ignores, symlinks that lead back into a folder already being walked, and unsupported types.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from harag_cli.documents.readers import SUFFIXES, Failure, supported

SKIPPED_DIRS = {"node_modules": "node_modules", "__pycache__": "__pycache__"}


@dataclass(frozen=True)
class Found:
    """A file to read and the id of its document(s)."""

    path: Path
    doc_id: str


@dataclass
class Walk:
    files: list[Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    failures: list[Failure] = field(default_factory=list)

    def skipped_by_reason(self) -> Counter[str]:
        return Counter(reason for _, reason in self.skipped)


@dataclass(frozen=True)
class _Ignore:
    base: Path
    spec: pathspec.GitIgnoreSpec

    def matches(self, path: Path, is_dir: bool) -> bool:
        rel = path.relative_to(self.base).as_posix() + ("/" if is_dir else "")
        return self.spec.match_file(rel)


def _gitignore(directory: Path) -> _Ignore | None:
    path = directory / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return _Ignore(directory, pathspec.GitIgnoreSpec.from_lines(lines))


def walk(paths: list[Path]) -> Walk:
    out = Walk()
    for root in paths:
        if not root.exists() and not root.is_symlink():
            out.failures.append(Failure(str(root), "no such file or directory"))
        elif root.is_dir():
            _walk_dir(root, root, [], {os.path.realpath(root)}, out)
        elif root.is_file():
            if not _utf8(root.name):
                out.failures.append(Failure(str(root), "file name is not UTF-8; rename it"))
            elif supported(root):
                out.files.append(Found(root, root.name))
            else:
                out.failures.append(
                    Failure(str(root), f"unsupported file type (use {', '.join(SUFFIXES)})")
                )
        else:
            out.failures.append(Failure(str(root), "not a regular file or directory"))
    return out


def _walk_dir(
    root: Path, directory: Path, ignores: list[_Ignore], ancestors: set[str], out: Walk
) -> None:
    own = _gitignore(directory)
    if own is not None:
        ignores = [*ignores, own]
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        out.failures.append(Failure(str(directory), f"cannot list ({exc.strerror})"))
        return
    for entry in entries:
        path = Path(entry.path)
        shown = path.relative_to(root).as_posix()
        if not _utf8(shown):
            shown = shown.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            out.skipped.append((shown, "name is not UTF-8"))
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks
            is_file = entry.is_file()
        except OSError:
            is_dir = is_file = False
        reason = _skip_reason(entry.name, path, is_dir, ignores)
        if reason:
            out.skipped.append((shown + ("/" if is_dir else ""), reason))
        elif is_dir:
            real = os.path.realpath(path)
            if real in ancestors:
                out.skipped.append((shown + "/", "symlink loop"))
                continue
            _walk_dir(root, path, ignores, ancestors | {real}, out)
        elif not is_file:
            reason = "broken symlink" if entry.is_symlink() else "not a regular file"
            out.skipped.append((shown, reason))
        elif supported(path):
            out.files.append(Found(path, shown))
        else:
            out.skipped.append((shown, f"unsupported type {path.suffix.lower() or '(none)'}"))


def _utf8(name: str) -> bool:
    """Whether a file name can be an id (and printed): not undecodable bytes from the disk."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _skip_reason(name: str, path: Path, is_dir: bool, ignores: list[_Ignore]) -> str:
    if name.startswith("."):
        return "hidden"
    if is_dir and name in SKIPPED_DIRS:
        return SKIPPED_DIRS[name]
    if is_dir and (path / "pyvenv.cfg").exists():
        return "virtual environment"
    if any(i.matches(path, is_dir) for i in ignores):
        return ".gitignore"
    return ""
