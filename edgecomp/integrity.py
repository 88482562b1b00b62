"""Bundles handed back to edgecomp (``run``, ``flash``, ``deploy``, ``report``) are checked, then copied.

A bundle folder may have been edited, or made by someone else.  Before edgecomp
builds, flashes, runs or copies one:

* ``manifest.json`` must be a regular file holding a JSON object whose ``files``
  maps plain file names (no ``/``, no leading ``.``) to sha256 digests
  (:func:`read_checked_manifest`; a damaged manifest is one clear error);
* the folder must hold exactly those files plus the manifest, as regular files:
  a symbolic link anywhere, or a file the manifest does not list (an extra
  ``zz_evil.c``), is refused (:func:`check_folder`).  The only other names
  allowed are the ones edgecomp itself writes there afterwards: ``build/`` (the
  default folder of the bundle's own Makefile, never read by edgecomp) and a Pi
  bundle's ``probe.json`` / ``probe.png`` (``edgecomp deploy``'s results), and a Cortex-M
  bundle's ``ec_input.bin`` / ``ec_output.bin`` (the harness's data files its README makes) and
  ``run.json`` (``edgecomp run``'s measured instructions, edgecomp/run_results.py);
* :func:`stage` copies the listed files into a private folder while hashing the
  bytes it copies (opened with ``O_NOFOLLOW``), so what is built or sent is
  exactly what was checked, even if the bundle changes meanwhile.

Results are written into a bundle only by :func:`write_result`: a new file created
with ``O_EXCL | O_NOFOLLOW`` and renamed over the old name (a rename replaces a
symbolic link, it never writes through it).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import EdgecompError, ModelError, ToolError

MANIFEST = "manifest.json"
#: A bundle's file names: flat, no hidden files, nothing a shell or make would read specially.
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST_BYTES = 16 << 20
#: Folders a bundle may hold besides its files: the bundle Makefile's default build folder.
BUILD_DIRS = ("build",)
#: Files edgecomp deploy writes into a Raspberry Pi bundle after compiling it.
RESULT_FILES = ("probe.json", "probe.png")
#: What `edgecomp run` writes into a Cortex-M bundle after a run under QEMU (edgecomp/run_results.py).
RUN_RESULTS = ("run.json",)
#: The firmware harness's data files a Cortex-M bundle's README has the user make beside it (input
#: samples read and outputs written over semihosting by `make run`): data, never built or copied.
HARNESS_DATA = ("ec_input.bin", "ec_output.bin")
_FIX = "Compile the bundle again (edgecomp builds, flashes and deploys only what the manifest lists)"


def _not_bundle(root: Path) -> ModelError:
    return ModelError(f"{root} is not an edgecomp bundle (no {MANIFEST})",
                      fix="Pass the folder written by `edgecomp compile`")


def read_checked_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest as a dict, after checking that it is one; ModelError otherwise."""
    root = Path(root)
    if not root.is_dir():
        if root.exists():
            raise ModelError(f"{root} is a file, not a bundle folder", fix="Pass the folder written by `edgecomp compile`")
        raise ModelError(f"bundle folder {root} does not exist", fix="Check the path")
    p = root / MANIFEST
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise _not_bundle(root) from None
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e.strerror}", fix="Check the permissions") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{MANIFEST} is not a regular file (a symbolic link or a device)", where=str(root), fix=_FIX)
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ModelError(f"{MANIFEST} is {st.st_size:,} bytes, far larger than any edgecomp manifest",
                         where=str(root), fix=_FIX)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        data = json.loads(raw.decode("utf-8"))
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e.strerror}", fix="Check the permissions") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ModelError(f"{MANIFEST} is not valid JSON ({type(e).__name__}: {str(e)[:80]})", where=str(root),
                         fix=_FIX) from None
    if not isinstance(data, dict):
        raise ModelError(f"{MANIFEST} is not a JSON object", where=str(root), fix=_FIX)
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{MANIFEST} lists no files", where=str(root), fix=_FIX)
    for name, digest in files.items():
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or name == MANIFEST:
            raise ModelError(f"{MANIFEST} lists a file name edgecomp never writes ({str(name)[:60]!r})",
                             where=str(root), fix=_FIX)
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ModelError(f"{MANIFEST} has no sha256 for {name!r}", where=str(root), fix=_FIX)
    for key, kind in (("target", str), ("inputs", list), ("outputs", list), ("layers", list), ("name", str)):
        if key in data and not isinstance(data[key], kind):
            raise ModelError(f"{MANIFEST}: {key!r} is not a {kind.__name__}", where=str(root), fix=_FIX)
    for key in ("inputs", "outputs"):
        for io in data.get(key) or []:
            if not isinstance(io, dict) or not isinstance(io.get("shape", []), list) or \
                    not all(isinstance(d, int) and not isinstance(d, bool) for d in io.get("shape", [])):
                raise ModelError(f"{MANIFEST}: an entry of {key!r} is malformed", where=str(root), fix=_FIX)
    return data


def extras_allowed(manifest: dict) -> dict[str, str]:
    """Names a bundle may hold besides its listed files: name -> "dir" or "file"."""
    allowed = {d: "dir" for d in BUILD_DIRS}
    if manifest.get("kind") == "rpi":
        allowed.update({f: "file" for f in RESULT_FILES})
    else:
        allowed.update({f: "file" for f in HARNESS_DATA + RUN_RESULTS})
    return allowed


def check_folder(root: str | Path, manifest: dict, allow: tuple | set = ()) -> None:
    """Refuse symbolic links, unlisted files and missing files (ModelError naming them).
    ``allow``: names of files the user named explicitly (``edgecomp flash --source uart.c``)."""
    root = Path(root)
    files = manifest["files"]
    allowed = {**extras_allowed(manifest), **{n: "file" for n in allow}}
    links, unlisted, odd = [], [], []
    seen = set()
    with os.scandir(root) as it:
        for e in it:
            if e.is_symlink():
                links.append(e.name)
                continue
            if e.name == MANIFEST:
                continue
            if e.name in files:
                seen.add(e.name)
                if not e.is_file(follow_symlinks=False):
                    odd.append(e.name)
            elif allowed.get(e.name) == "dir" and e.is_dir(follow_symlinks=False):
                continue
            elif allowed.get(e.name) == "file" and e.is_file(follow_symlinks=False):
                continue
            else:
                unlisted.append(e.name)
    show = lambda names: ", ".join(sorted(repr(n) if not FILE_NAME.fullmatch(n) else n for n in names)[:8])  # noqa: E731
    if links:
        raise ModelError(f"the bundle holds symbolic links: {show(links)}", where=str(root),
                         fix="A bundle holds regular files only; copy the files in, or compile the bundle again")
    if unlisted:
        raise ModelError(f"the bundle holds files its manifest does not list: {show(unlisted)}", where=str(root),
                         fix="Remove them, or compile the bundle again (edgecomp builds, flashes and deploys only "
                             "what the manifest lists)")
    if odd:
        raise ModelError(f"bundle entries are not regular files: {show(odd)}", where=str(root), fix=_FIX)
    missing = sorted(set(files) - seen)
    if missing:
        raise ModelError(f"bundle files differ from the manifest: {', '.join(missing[:8])} missing",
                         where=str(root), fix=_FIX)


def _read_regular(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(0, "not a regular file", str(path))
        return f.read()


def stage(root: str | Path, dest: str | Path, manifest: dict | None = None, allow: tuple | set = ()) -> dict[str, Any]:
    """Check ``root`` and copy its listed files into ``dest``; return the manifest.

    Each file is hashed as it is copied and compared with the manifest, so the
    copy is what was verified.  Raises ModelError on any difference.
    """
    root, dest = Path(root), Path(dest)
    if manifest is None:
        manifest = read_checked_manifest(root)
    check_folder(root, manifest, allow)
    bad = []
    for name, digest in sorted(manifest["files"].items()):
        try:
            data = _read_regular(root / name)
        except OSError:
            bad.append(name)
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            bad.append(name)
            continue
        (dest / name).write_bytes(data)
    if bad:
        raise ModelError(f"bundle files differ from the manifest: {', '.join(bad[:8])}", where=str(root),
                         fix="Someone or something changed the bundle after compiling; compile it again "
                             "(do not edit generated files in place)")
    mp = dest / MANIFEST
    mp.write_bytes(_read_regular(root / MANIFEST))
    return manifest


def verify_bundle(root: str | Path, allow: tuple | set = ()) -> dict[str, Any]:
    """Check ``root`` in place (manifest, folder, every hash); return the manifest."""
    root = Path(root)
    manifest = read_checked_manifest(root)
    check_folder(root, manifest, allow)
    bad = []
    for name, digest in sorted(manifest["files"].items()):
        h = hashlib.sha256()
        try:
            fd = os.open(root / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 16), b""):
                    h.update(chunk)
        except OSError:
            bad.append(name)
            continue
        if h.hexdigest() != digest:
            bad.append(name)
    if bad:
        raise ModelError(f"bundle files differ from the manifest: {', '.join(bad[:8])}", where=str(root),
                         fix="Someone or something changed the bundle after compiling; compile it again "
                             "(do not edit generated files in place)")
    return manifest


def write_result(root: str | Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``root/name``: a new regular file, renamed into place (never through a link)."""
    root = Path(root)
    if not FILE_NAME.fullmatch(name):
        raise EdgecompError(f"bad result file name {name!r}")
    tmp = root / f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, root / name)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ToolError(f"cannot write {name}: {e.strerror}", str(root),
                        "check that the bundle folder is writable and that no folder has that name") from None
    return root / name
