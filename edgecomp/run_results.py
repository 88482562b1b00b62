"""What ``edgecomp run`` measured, kept beside the bundle: ``run.json``.

After a run under QEMU (``-icount shift=0``: instructions are exact counts), ``edgecomp run`` writes
the per-layer instructions of the first inference into the bundle as ``run.json``, a result file
(:func:`edgecomp.integrity.write_result`: a new regular file renamed into place), not a bundle
source: the manifest does not list it, nothing builds it, and a bundle check allows it by name
(``integrity.RUN_RESULTS``).  ``edgecomp report`` reads it back to show what each layer left in
float costs in instructions (``report.quantization_lines``).

The file is checked like any bundle content (it may have been edited): a bounded regular file, not
a link, JSON of the expected shape; and it counts only for the manifest it was measured with (its
``manifest_sha256``): after a recompile it is stale and ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from .integrity import MANIFEST, RUN_RESULTS, write_result

RUN_FILE = RUN_RESULTS[0]
FORMAT = "edgecomp-run-1"
MAX_BYTES = 4 << 20  # far above any model's layer list


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link) of at most ``limit`` bytes."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def manifest_digest(bundle: str | Path) -> str | None:
    data = _read_regular(Path(bundle) / MANIFEST, 16 << 20)
    return None if data is None else hashlib.sha256(data).hexdigest()


def save(bundle: str | Path, table: Any, result: Any) -> Path | None:
    """Write ``run.json`` for a QEMU run (``result``: backends.run.RunResult; ``table``: its
    probe.LayerTable); nothing for a native or board run (no instruction counts)."""
    if not getattr(result, "emulated", False) or not result.instructions_per_inference:
        return None
    digest = manifest_digest(bundle)
    if digest is None:
        return None
    layers = [{"name": str(r["name"]), "op": str(r["op"]), "instructions": r.get("instructions")}
              for r in table.rows]
    data = {"format": FORMAT, "manifest_sha256": digest, "emulator": f"qemu-system-arm -M {result.machine} "
            "-icount shift=0", "total_instructions": int(result.instructions_per_inference), "layers": layers}
    return write_result(Path(bundle), RUN_FILE, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 62


def load(bundle: str | Path) -> dict | None:
    """The bundle's ``run.json`` if present, well formed and measured with the present manifest;
    else None (never an error: a result file is a convenience, the bundle is what counts)."""
    raw = _read_regular(Path(bundle) / RUN_FILE, MAX_BYTES)
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("layers"), list):
        return None
    if data.get("manifest_sha256") != manifest_digest(bundle) or not _count(data.get("total_instructions")):
        return None
    for layer in data["layers"]:
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) or \
                not (layer.get("instructions") is None or _count(layer["instructions"])):
            return None
    if not isinstance(data.get("emulator"), str):
        return None
    return data
