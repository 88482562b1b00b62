"""Output folders and files: what edgecomp may replace, checked before any work is done.

Every command that writes a folder (``compile -o``, ``compress -o``, ``demo -o``) follows one rule:

* a missing folder is created; an existing *empty* folder is replaced;
* an existing folder is replaced whole only when it is an **edgecomp folder** -- its
  ``manifest.json`` was written by edgecomp (``"tool": "edgecomp"`` and the ``"files"`` it
  wrote) -- and it holds nothing else than those files, the manifest, and what the bundle's
  own commands make (``build/``, ``ec_input.bin``, ``ec_output.bin``, ``run.json``);
* anything else (a project folder, a bundle the user added files to, the working folder, home,
  a mount point) is refused with exit 2 and left untouched;
* with ``--force`` edgecomp writes *into* such a folder, file by file, and still deletes
  nothing it did not write: it replaces or removes only the files the old manifest lists, and
  refuses (before changing anything) when a new file would overwrite a file it did not write;
* a file, a symlink or ``/`` is never an output folder.

:func:`check_output_dir` applies the rule and probes that the folder can be written (a
read-only file system, ``/proc/...``, a missing drive) -- callers run it before calibration
or any other work, so a bad ``-o`` costs nothing.  :func:`check_output_file` does the same
for single output files (``run --output``, ``--plot``).
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgecompError

MANIFEST = "manifest.json"
#: What a bundle's own README / Makefile commands create inside it (never listed, always edgecomp's).
ARTIFACTS = ("build", "ec_input.bin", "ec_output.bin", "run.json")
#: Entries looked at before a folder counts as "too big to be one edgecomp wrote".
SCAN_LIMIT = 20000
#: Temporary folder of a write --force puts inside the output folder (same file system).
TMP_PREFIX = ".edgecomp.tmp-"


@dataclass
class OutputPlan:
    """How an output folder will be written."""

    dest: Path  # absolute
    mode: str  # "create" (missing), "replace" (empty or edgecomp's alone), "into" (--force)
    owned: set[str] = field(default_factory=set)  # files of the old manifest (relative POSIX paths)
    foreign: list[str] = field(default_factory=list)  # what edgecomp did not write (kept)


def _refuse(what: str, where: Path, fix: str) -> EdgecompError:
    """One message; ``where`` only when ``what`` does not already name it."""
    return EdgecompError(what, None if str(where) in what else str(where), fix[:1].upper() + fix[1:])


def safe_relpath(rel: object) -> bool:
    """A manifest entry that names a file inside the folder (no absolute path, no '..')."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return False
    norm = posixpath.normpath(rel)
    return norm == rel and not norm.startswith(("/", "../")) and norm not in (".", "..")


def manifest_files(folder: Path) -> set[str] | None:
    """The files edgecomp wrote in ``folder`` (its manifest's list, and the manifest), or None if edgecomp did
    not write it.

    A manifest that is not valid JSON, not edgecomp's, or lists a path outside the folder
    means the folder is not edgecomp's.
    """
    p = Path(folder) / MANIFEST
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size > 64 << 20:
            return None
        man = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(man, dict) or man.get("tool") != "edgecomp" or not isinstance(man.get("files"), dict):
        return None
    files = set(man["files"])
    if not all(safe_relpath(f) for f in files):
        return None
    return files | {MANIFEST}


def _scan(folder: Path, owned: set[str]) -> list[str]:
    """Entries of ``folder`` edgecomp did not write: files, symlinks and empty folders not owned."""
    foreign: list[str] = []
    seen = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel_root = Path(root).relative_to(folder).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        if rel_root == "":
            for d in [d for d in dirs if d.startswith(TMP_PREFIX)]:
                dirs.remove(d)  # edgecomp's own temporary folder (writing --force)
            if "build" in dirs and owned:
                dirs.remove("build")  # the bundle's build folder (make BUILD=build, edgecomp run)
        for d in list(dirs):
            if os.path.islink(os.path.join(root, d)):
                dirs.remove(d)
                files.append(d)  # a symlink to a folder: an entry, not followed
        for name in files:
            rel = rel_root + name
            seen += 1
            if seen > SCAN_LIMIT:
                foreign.append(f"... (more than {SCAN_LIMIT:,} entries)")
                return foreign
            full = os.path.join(root, name)
            if os.path.islink(full) or rel not in owned:
                if not (rel_root == "" and name in ARTIFACTS and owned):
                    foreign.append(rel)
        if not files and not dirs and rel_root and rel_root[:-1] not in owned:
            foreign.append(rel_root)  # an empty folder someone made
    return foreign


def _precious(dest: Path) -> bool:
    """The working folder, home, a root or mount point, or a parent of those: never swapped away."""
    try:
        keep = {Path.cwd().resolve(), Path.home().resolve()}
    except OSError:
        keep = {Path.home()}
    return (dest.parent == dest or os.path.ismount(dest)
            or any(p == dest or dest in p.parents for p in keep))


@contextlib.contextmanager
def _signals_held():
    """SIGINT / SIGTERM wait until the block ends (then they act as usual): for a create-then-remove
    pair that must not be cut in two.  Outside the main thread, nothing is held."""
    import signal
    import threading

    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def probe_writable(folder: Path, dest: Path, option: str) -> None:
    """Create and remove a temporary folder in ``folder``: the only sure test (root, read-only mounts, /proc)."""
    try:
        with _signals_held():  # a Ctrl-C between the two calls would leave the probe behind
            os.rmdir(tempfile.mkdtemp(prefix=".edgecomp-probe-", dir=folder))
    except OSError as e:
        raise _refuse(f"cannot write the output {dest}: {e.strerror or e}", folder,
                      f"choose an output folder you can write to ({option})") from None


def _existing_ancestor(p: Path) -> Path:
    while not (p.exists() or p.is_symlink()) and p.parent != p:
        p = p.parent
    return p


def check_output_dir(dest: str | Path, *, force: bool = False, option: str = "-o",
                     probe: bool = True) -> OutputPlan:
    """Apply the output-folder rule to ``dest`` (see the module docstring); return the plan.

    Raises :class:`EdgecompError` (exit 2) for a folder that may not be written or cannot be.
    """
    raw = Path(dest)
    if str(dest) == "":
        raise _refuse("the output folder is an empty string", raw, f"give a folder name ({option} bundle)")
    if raw.is_symlink():
        raise _refuse(f"{raw} is a symbolic link; edgecomp does not write through it", raw,
                      f"give the real folder, or a new one ({option} bundle)")
    dest = raw.resolve()
    if dest.exists() and not dest.is_dir():
        raise _refuse(f"{dest} exists and is not a folder; refusing to replace it", dest,
                      f"choose a new output folder ({option} bundle)")
    if not dest.exists():
        anc = _existing_ancestor(dest.parent)
        if not anc.is_dir():
            raise _refuse(f"cannot create the output {dest}: {anc} is not a folder", anc,
                          f"choose an output folder ({option})")
        if probe:
            probe_writable(anc, dest, option)
        return OutputPlan(dest, "create")
    fix = (f"choose a new output folder ({option} bundle), or add --force to write into it: "
           "edgecomp then replaces only the files it wrote there and keeps the rest")
    if dest.parent == dest:
        raise _refuse(f"{dest} is the root folder; refusing to replace it or write into it", dest,
                      f"choose a new output folder ({option} bundle)")
    owned = manifest_files(dest)
    if _precious(dest):  # not scanned: home or a mount point can hold millions of files
        if not force:
            raise _refuse(f"{dest} is the working folder, home, a mount point or holds one; refusing to replace it",
                          dest, fix)
        if probe:
            probe_writable(dest, dest, option)
        return OutputPlan(dest, "into", owned or set())
    foreign = _scan(dest, owned or set())
    if not foreign:  # empty, or only what edgecomp wrote
        if probe:
            probe_writable(dest.parent, dest, option)
        return OutputPlan(dest, "replace", owned or set())
    if force:
        if probe:
            probe_writable(dest, dest, option)
        return OutputPlan(dest, "into", owned or set(), foreign)
    shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
    if owned is None:
        what = f"{dest} exists and is not an edgecomp output folder (it holds {shown}); refusing to replace it"
    else:
        what = f"{dest} holds files edgecomp did not write ({shown}); refusing to replace it"
    raise _refuse(what, dest, fix)


def check_output_file(path: str | Path | None, option: str, create_parent: bool = False) -> Path | None:
    """An output file the user named (``--output y.npy``, ``--plot x.png``): its folder must exist (or be
    made, ``create_parent``) and be writable, and the path must not be a folder.  Checked before the work
    that produces it."""
    if path is None:
        return None
    p = Path(path)
    if create_parent and str(path) and not p.parent.exists():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _refuse(f"cannot create the folder of {option} {p}: {e.strerror or e}", p.parent,
                          "choose a path you can write to") from None
    if str(path) == "" or p.name in ("", ".", ".."):
        raise _refuse(f"{option} needs a file name, got {str(path)!r}", p, f"give a file, e.g. {option} out.png")
    if p.is_dir():
        raise _refuse(f"{p} is a folder", p, f"give a file name for {option}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _refuse(f"the folder of {option} {p} does not exist", parent, "create it first or choose another path")
    try:
        with _signals_held():
            fd, tmp = tempfile.mkstemp(prefix=".edgecomp-probe-", dir=parent)
            os.close(fd)
            os.unlink(tmp)
    except OSError as e:
        raise _refuse(f"cannot write {option} {p}: {e.strerror or e}", parent,
                      "choose a path you can write to") from None
    return p


def remove_files(dest: Path, rels) -> None:
    """Delete the regular files ``rels`` (relative paths edgecomp wrote) and the folders that leaves empty."""
    for rel in sorted(rels):
        p = dest / rel
        if safe_relpath(rel) and p.is_file() and not p.is_symlink():
            p.unlink()
            for d in p.parents:
                if d == dest or any(d.iterdir()):
                    break
                d.rmdir()


def prepare_in_place(plan: OutputPlan, names: tuple[str, ...], option: str = "-o") -> list[str]:
    """Make ``plan.dest`` ready for a command that writes its outputs in place, as it goes (``compress``).

    ``names``: the top-level files and folders the command writes (``fnmatch`` patterns).  Refuses (before deleting
    anything) when one of them is a file edgecomp did not write; then deletes what the previous
    run of edgecomp wrote there (only that) and returns the entries to leave out of the new
    manifest (what edgecomp did not write).
    """
    dest = plan.dest
    clash = sorted(f for f in plan.foreign if any(fnmatch.fnmatchcase(f.split("/")[0], n) for n in names))
    if clash:
        raise _refuse(f"--force would overwrite {', '.join(clash[:5])} in {dest}, which edgecomp did not write",
                      dest, f"move those away or choose a new output folder ({option})")
    if plan.mode == "replace":
        for p in list(dest.iterdir()):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    elif plan.mode == "into":
        remove_files(dest, plan.owned)
    dest.mkdir(parents=True, exist_ok=True)
    return list(plan.foreign)
