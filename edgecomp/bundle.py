"""Bundle folders: atomic creation and the manifest every bundle carries.

A bundle is written into a temporary sibling folder and renamed into place only
when complete, so an interrupted compile leaves either the previous bundle or the
new one, never a mix.  ``manifest.json`` lists the sha256 of every file.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import __version__
from .errors import EdgecompError, ModelError, ToolError
from .outputs import TMP_PREFIX, OutputPlan, check_output_dir, manifest_files, remove_files

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(root: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of every file under root (relative POSIX paths, sorted), its manifest and ``skip`` excluded."""
    out = {}
    skip = set(skip)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not p.is_symlink() and rel != MANIFEST and rel not in skip:
            out[rel] = sha256_file(p)
    return out


def write_manifest(root: Path, data: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Write manifest.json with ``data`` plus tool version and file hashes; return it.

    ``"tool": "edgecomp"`` and ``"files"`` are what marks a folder as edgecomp's
    (:mod:`edgecomp.outputs`): only the listed files are ever replaced or deleted by a
    later run.  ``skip``: files in ``root`` that edgecomp did not write (``--force``).
    """
    manifest = {"tool": "edgecomp", "tool_version": __version__, **data, "files": file_hashes(root, skip)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    """The JSON object in ``root/manifest.json``; a missing folder or file, or one that is not a JSON
    object, is a :class:`ModelError` that says so (exit 2), never a traceback."""
    root = Path(root)
    fix = "Pass the folder written by `edgecomp compile`"
    if not root.exists():
        raise ModelError(f"{root} does not exist", fix=fix)
    if not root.is_dir():
        raise ModelError(f"{root} is a file, not a bundle folder", fix=fix + " (it holds manifest.json)")
    p = root / MANIFEST
    if not p.is_file():
        raise ModelError(f"{root} is not an edgecomp bundle (no {MANIFEST})", fix=fix)
    try:
        if p.stat().st_size > 64 << 20:
            raise ValueError("larger than 64 MiB")
        man = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ModelError(f"{MANIFEST} is not valid JSON: {str(e)[:200]}", where=str(root),
                         fix="Compile the bundle again") from None
    except OSError as e:
        raise ModelError(f"cannot read {MANIFEST}: {e.strerror or e}", where=str(root), fix=fix) from None
    if not isinstance(man, dict):
        raise ModelError(f"{MANIFEST} is not a JSON object", where=str(root), fix="Compile the bundle again")
    return man


def _is_int(v: Any, lo: int = -(2**63), hi: int = 2**63 - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _io_ok(io: Any) -> bool:
    if not (isinstance(io, dict) and isinstance(io.get("name", ""), str) and isinstance(io.get("shape"), list)
            and 1 <= len(io["shape"]) <= 8 and all(_is_int(d, 1, 1 << 30) for d in io["shape"])
            and io.get("dtype") in ("int8", "uint8", "int16", "int32", "float32")
            and io.get("source_layout", "NHWC") in ("NCHW", "NHWC", "NCW")):
        return False
    q = io.get("quantization")
    if q is None:
        return io["dtype"] == "float32"
    return (isinstance(q, dict) and isinstance(q.get("scale"), list) and isinstance(q.get("zero_point"), list)
            and len(q["scale"]) >= 1 and len(q["zero_point"]) >= 1
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e30 for v in q["scale"])
            and all(_is_int(v, -(1 << 31), 1 << 31) for v in q["zero_point"]))


def read_bundle_manifest(root: Path) -> dict[str, Any]:
    """:func:`read_manifest` of a compiled bundle, with the fields `run`, `report` and `probe` read checked."""
    root = Path(root)
    man = read_manifest(root)
    kind = man.get("kind")
    if man.get("tool") != "edgecomp":
        raise ModelError(f"{root / MANIFEST} was not written by edgecomp", fix="Pass a folder written by `edgecomp compile`")
    if kind in ("demo", "compress"):
        raise ModelError(f"{root} holds the results of `edgecomp {kind}`, not a bundle",
                         fix=f"Pass its bundle folder ({root / 'bundle'})" if kind == "demo"
                         else "Compile the chosen model (chosen.int8.onnx) with `edgecomp compile`")
    bad = []
    if not isinstance(man.get("target"), str):
        bad.append("target")
    for key in ("inputs", "outputs"):
        ios = man.get(key)
        if not (isinstance(ios, list) and ios and all(
                _io_ok(io) if kind != "rpi" else isinstance(io, dict) and isinstance(io.get("shape"), list)
                and isinstance(io.get("name", ""), str) and isinstance(io.get("dtype", ""), str)
                and (io.get("quantization") is None or _io_ok(io)) for io in ios)):
            bad.append(key)
    layers = man.get("layers", [])
    if not (isinstance(layers, list) and len(layers) <= 1 << 16 and all(
            isinstance(l, dict) and isinstance(l.get("name", ""), str) and isinstance(l.get("op", ""), str)
            and _is_int(l.get("macs", 0), 0) and isinstance(l.get("out_shape", []), list)
            and all(_is_int(d) for d in l.get("out_shape", [])) for l in layers)):
        bad.append("layers")
    for key in ("flash_bytes", "ram_bytes", "macs", "params", "model_flash_bytes"):
        if key in man and not (man[key] is None or _is_int(man[key], 0)):
            bad.append(key)
    for key in ("options", "ram", "fits", "target_info", "probe", "sections", "runtime", "quantization"):
        if key in man and not isinstance(man[key], dict):
            bad.append(key)
    if not isinstance(man.get("name", ""), str):
        bad.append("name")
    if bad:
        raise ModelError(f"{MANIFEST} has missing or malformed fields: {', '.join(bad)}", where=str(root),
                         fix="Compile the bundle again (do not edit manifest.json)")
    return man


def verify_manifest(root: Path) -> list[str]:
    """Return the files whose hash differs from the manifest (missing ones and unsafe paths included)."""
    from .outputs import safe_relpath

    root = Path(root)
    manifest = read_manifest(root)
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        return ["files (not a mapping)"]
    bad = []
    for rel, digest in files.items():
        p = root / rel
        if not safe_relpath(rel) or not isinstance(digest, str) or p.is_symlink() or not p.is_file() \
                or sha256_file(p) != digest:
            bad.append(rel)
    return bad


#: Write failures that are the disk's, not edgecomp's: reported as one clear message.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}

RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the call is not available (other systems, old kernels,
    file systems without support); the caller then falls back to two renames.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(dest: Path) -> None:
    """Remove temporary folders of ``dest`` left by a process that was killed (SIGKILL, power loss)."""
    for p in dest.parent.glob(f".{glob.escape(dest.name)}.*-*"):
        m = re.fullmatch(re.escape(f".{dest.name}.") + r"(tmp|old)-(\d+)(-.*)?", p.name)
        if m and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)
    if dest.is_dir() and not dest.is_symlink():  # a write --force into it
        for p in dest.glob(f"{TMP_PREFIX}*-*"):
            m = re.fullmatch(re.escape(TMP_PREFIX) + r"(\d+)-.*", p.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)


#: (parent folder, temporary-name prefix) of every atomic_dir this process opened.
_TOUCHED: set[tuple[str, str]] = set()


def _sweep_own(parent: str, prefix: str) -> None:
    for p in Path(parent).glob(glob.escape(prefix) + "*"):
        shutil.rmtree(p, ignore_errors=True)


@atexit.register
def _sweep_at_exit() -> None:
    """A Ctrl-C can land between two bytecodes where no handler sees it (inside mkdtemp, between a
    context manager's __enter__ and the with body): whatever temporary folder this process still
    owns is removed when it exits.  (SIGKILL leftovers are removed by the next run, _remove_stale.)"""
    own = f".tmp-{os.getpid()}-"  # a forked child must not sweep its parent's folders
    for parent, prefix in list(_TOUCHED):
        if prefix.endswith(own):
            _sweep_own(parent, prefix)


def _commit_into(tmp: Path, dest: Path) -> None:
    """``--force``: move the new files of ``tmp`` into ``dest`` one by one, deleting only what edgecomp wrote.

    Everything is checked before anything changes: a new file that would overwrite a file (or
    pass through a symlink or a file) edgecomp did not write stops the whole write.
    """
    owned = manifest_files(dest) or set()
    new = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    for rel in new:
        parts = rel.split("/")
        for k in range(1, len(parts)):
            d = dest.joinpath(*parts[:k])
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                raise EdgecompError(f"--force would write {rel} through {d}, which edgecomp did not make",
                                    str(dest), "move it away or choose a new output folder")
        t = dest / rel
        if t.is_symlink() or t.is_dir() or (t.exists() and rel not in owned):
            raise EdgecompError(f"--force would overwrite {t}, which edgecomp did not write", str(dest),
                                "move or rename that file, or choose a new output folder")
    remove_files(dest, owned - set(new))
    for rel in [r for r in new if r != MANIFEST] + ([MANIFEST] if MANIFEST in new else []):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, dest / rel)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _disk_error(e: BaseException, dest: Path) -> None:
    if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
        raise ToolError(f"cannot write the bundle: {os.strerror(e.errno)}", str(dest.parent),
                        f"free space or choose another output folder; {dest.name} was left as it was") from e


@contextlib.contextmanager
def atomic_dir(dest: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``dest``; on success it replaces ``dest``.

    ``dest`` must be one that :func:`edgecomp.outputs.check_output_dir` allows to replace (a
    missing, empty or edgecomp-written folder); anything else is refused before the body runs.
    With ``force=True`` such a folder is written into instead (:func:`_commit_into`).

    On any exception (KeyboardInterrupt included) the temporary folder is removed
    and ``dest`` is left as it was.  The replacement is one atomic exchange where
    the system offers it (Linux ``renameat2``), so there is no moment at which
    ``dest`` is missing or half written, even if the process is killed; elsewhere
    it is two renames.  Temporary folders of killed runs are removed next time.
    """
    plan: OutputPlan = check_output_dir(dest, force=force)
    dest = plan.dest
    if plan.mode == "into":
        _remove_stale(dest)
        base, prefix = dest, f"{TMP_PREFIX}{os.getpid()}-"
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(dest)
        base, prefix = dest.parent, f".{dest.name}.tmp-{os.getpid()}-"
    _TOUCHED.add((str(base), prefix))
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700: the folder gets the user's usual mode
        yield tmp
        # The folder may have changed while we worked (a user saved a file in it): the rule again.
        if check_output_dir(dest, force=force, probe=False).mode == "into":
            _commit_into(tmp, dest)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if dest.exists() and not dest.is_symlink() and dest.is_dir() and _exchange(tmp, dest):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous bundle
            return
        old = None
        if dest.exists() or dest.is_symlink():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # interrupted inside mkdtemp: the folder may exist under a name we never saw
            _sweep_own(str(base), prefix)
        _disk_error(e, dest)
        raise
