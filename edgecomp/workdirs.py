"""Private temporary folders, named after the process that owns them.

Every scratch folder edgecomp makes in ``$TMPDIR`` is ``edgecomp-<pid>-<kind>-<random>``
and is removed when its ``with`` block ends.  A process killed with SIGKILL cannot
remove its own: the next edgecomp process removes folders of that name whose owner
(same user) is no longer running (:func:`sweep_stale`).  Nothing else in ``$TMPDIR``
is touched.  Paths are handed to tools as argv elements or as working folders, never
through a shell or make, so a ``$TMPDIR`` with spaces or quotes works.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

_NAME = re.compile(r"edgecomp-(\d+)-[A-Za-z0-9_.-]*")
_swept = False
_at_exit: list[tuple[int, Path]] = []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_stale(root: str | Path | None = None) -> list[str]:
    """Remove ``edgecomp-<pid>-*`` folders of this user whose process is gone; return their names."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    uid = os.getuid()
    for e in entries:
        m = _NAME.fullmatch(e.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or _pid_alive(int(m.group(1))):
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(e.name)
    return removed


def _sweep_once() -> None:
    global _swept
    if not _swept:
        _swept = True
        sweep_stale()


def make_dir(kind: str) -> Path:
    """A fresh private folder ``$TMPDIR/edgecomp-<pid>-<kind>-XXXX`` (mode 0700); the caller removes it."""
    _sweep_once()
    kind = re.sub(r"[^A-Za-z0-9_.]", "_", kind)[:32] or "tmp"
    return Path(tempfile.mkdtemp(prefix=f"edgecomp-{os.getpid()}-{kind}-"))


@contextlib.contextmanager
def work_dir(kind: str) -> Iterator[Path]:
    """A private temporary folder for the ``with`` block (removed after it, also on errors)."""
    d = make_dir(kind)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def process_dir(kind: str) -> Path:
    """A private folder that lives until this process exits (e.g. a build whose ELF the caller keeps)."""
    d = make_dir(kind)
    _at_exit.append((os.getpid(), d))
    return d


@atexit.register
def _remove_process_dirs() -> None:
    for pid, d in _at_exit:
        if pid == os.getpid():  # a forked child leaves its parent's folders alone
            shutil.rmtree(d, ignore_errors=True)
