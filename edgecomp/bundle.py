"""Bundle folders: atomic creation and the manifest every bundle carries.

A bundle is written into a temporary sibling folder and renamed into place only
when complete, so an interrupted compile leaves either the previous bundle or the
new one, never a mix.  ``manifest.json`` lists the sha256 of every file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from . import __version__

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative POSIX paths, sorted), manifest excluded."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


def write_manifest(root: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.json with ``data`` plus tool version and file hashes; return it."""
    manifest = {"tool": "edgecomp", "tool_version": __version__, **data, "files": file_hashes(root)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((Path(root) / MANIFEST).read_text())


def verify_manifest(root: Path) -> list[str]:
    """Return the files whose hash differs from the manifest (missing ones included)."""
    root = Path(root)
    manifest = read_manifest(root)
    bad = []
    for rel, digest in manifest.get("files", {}).items():
        p = root / rel
        if not p.is_file() or sha256_file(p) != digest:
            bad.append(rel)
    return bad


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``dest``; on success it replaces ``dest``.

    On any exception (KeyboardInterrupt included) the temporary folder is removed
    and ``dest`` is left as it was.
    """
    dest = Path(dest).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
