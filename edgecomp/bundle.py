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
from typing import Any, Iterator

from . import __version__
from .errors import EdgecompError, ToolError

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
    """The bundle's manifest; a missing, damaged or non-object manifest is a ModelError (exit 2).
    (:func:`edgecomp.integrity.read_checked_manifest` also checks its file list.)"""
    from .errors import ModelError

    p = Path(root) / MANIFEST
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{root} is not an edgecomp bundle (no {MANIFEST})",
                         fix="Pass the folder written by `edgecomp compile`") from None
    except (NotADirectoryError, IsADirectoryError):
        raise ModelError(f"{root} is not a bundle folder", fix="Pass the folder written by `edgecomp compile`") from None
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e.strerror}", fix="Check the path and permissions") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ModelError(f"{MANIFEST} is not valid JSON ({type(e).__name__}: {str(e)[:80]})", where=str(root),
                         fix="Compile the bundle again") from None
    if not isinstance(data, dict):
        raise ModelError(f"{MANIFEST} is not a JSON object", where=str(root), fix="Compile the bundle again")
    return data


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


def _check_replaceable(dest: Path) -> None:
    """Never replace what cannot be a bundle: a file, the working folder, home, a root or their parents.

    ``edgecomp compile m.onnx -o .`` (or ``-o ~``) must not swap the user's folder away and delete it.
    """
    if not (dest.exists() or dest.is_symlink()):
        return
    precious = {Path.cwd().resolve(), Path.home().resolve()}
    if (not dest.is_dir() or dest.is_symlink() or dest.parent == dest or os.path.ismount(dest)
            or any(p == dest or dest in p.parents for p in precious)):
        raise EdgecompError(f"{dest} exists and is not an edgecomp bundle folder; refusing to replace it",
                            fix="Choose a new output folder, e.g. -o bundle (edgecomp replaces the whole folder)")


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


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``dest``; on success it replaces ``dest``.

    On any exception (KeyboardInterrupt included) the temporary folder is removed
    and ``dest`` is left as it was.  The replacement is one atomic exchange where
    the system offers it (Linux ``renameat2``), so there is no moment at which
    ``dest`` is missing or half written, even if the process is killed; elsewhere
    it is two renames.  Temporary folders of killed runs are removed next time.
    """
    dest = Path(dest).resolve()
    _check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(dest)
    prefix = f".{dest.name}.tmp-{os.getpid()}-"
    _TOUCHED.add((str(dest.parent), prefix))
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
        yield tmp
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
            _sweep_own(str(dest.parent), prefix)
        if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
            raise ToolError(f"cannot write the bundle: {os.strerror(e.errno)}", str(dest.parent),
                            f"free space or choose another output folder; {dest.name} was left as it was") from e
        raise
