"""Bundles stay whole when a compile is interrupted, killed, or runs out of disk.

Real processes, real signals: a child replaces a bundle through
``edgecomp.bundle.atomic_dir`` (and, once the code generator is in, a real
``edgecomp compile``) and is stopped with SIGINT or SIGKILL at several points.
Afterwards the destination must hold a complete bundle whose manifest
verifies, and nothing half-written may sit at the destination.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgecomp.bundle import _exchange, atomic_dir, read_manifest, verify_manifest, write_manifest
from edgecomp.errors import EdgecompError

ROOT = Path(__file__).resolve().parent.parent

# A child that replaces DEST with bundle generation 1, 2, 3, ...: each generation holds
# FILES files of SIZE bytes, all filled with the generation number, plus a manifest.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    # A process started in the background by a shell without job control inherits SIGINT
    # ignored; a user's Ctrl-C reaches Python as KeyboardInterrupt, so that is what we test.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from edgecomp.bundle import atomic_dir, write_manifest
    dest, files, size, delay, gens = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    gen = 0
    print("ready", flush=True)
    while gen < gens:
        gen += 1
        with atomic_dir(dest) as tmp:
            for i in range(files):
                (tmp / f"f{{i}}.bin").write_bytes(bytes([gen % 256]) * size)
                if delay:
                    time.sleep(delay)
            write_manifest(tmp, {{"target": "test", "generation": gen}})
    print("done", gen, flush=True)
""").format(root=str(ROOT))


def _start(dest: Path, files=20, size=4096, delay=0.0, gens=10**6) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(dest), str(files), str(size), str(delay), str(gens)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def _check_whole(dest: Path, files=20, size=4096) -> int:
    """dest is one complete generation: the manifest verifies and every file holds that generation."""
    assert dest.is_dir(), "destination missing"
    assert verify_manifest(dest) == []
    man = read_manifest(dest)
    gen = man["generation"]
    assert sorted(man["files"]) == sorted(f"f{i}.bin" for i in range(files))
    for i in range(files):
        assert (dest / f"f{i}.bin").read_bytes() == bytes([gen % 256]) * size
    return gen


def _first_bundle(dest: Path, files=20, size=4096) -> None:
    p = _start(dest, files, size, 0.0, gens=1)
    p.communicate(timeout=60)
    assert p.returncode == 0
    assert _check_whole(dest, files, size) == 1


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name != dest.name and p.name.startswith("."))


def test_replacement_is_one_atomic_exchange(tmp_path):
    """On Linux the swap is renameat2(RENAME_EXCHANGE): the destination is never absent."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a"), (b / "x").write_text("b")
    if not _exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_signal_right_after_the_first_rename_leaves_no_gap(tmp_path, monkeypatch):
    """Deterministic version of the race: a Ctrl-C lands just after the first rename call.

    With "rename the old bundle away, then the new one in", the destination is missing at
    that moment; with one exchange there is no such moment.
    """
    import edgecomp.bundle as b

    dest = tmp_path / "bundle"
    _first_bundle(dest)
    real_replace = os.replace

    def interrupted_after(fn):
        def wrapper(*a, **k):
            r = fn(*a, **k)
            raise KeyboardInterrupt
        return wrapper

    monkeypatch.setattr(b.os, "replace", interrupted_after(real_replace))
    try:
        with atomic_dir(dest) as tmp:
            for i in range(20):
                (tmp / f"f{i}.bin").write_bytes(bytes([2]) * 4096)
            write_manifest(tmp, {"target": "test", "generation": 2})
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert _check_whole(dest) in (1, 2)
    assert not [n for n in _leftovers(dest) if ".old-" in n]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_while_replacing_again_and_again(tmp_path, sig):
    """Kill a child that replaces the bundle in a tight loop at 12 random moments: always a whole bundle."""
    dest = tmp_path / "bundle"
    t0 = time.monotonic()
    _first_bundle(dest)
    one = time.monotonic() - t0  # a child's start and one replacement, on this machine under its load now
    seen = set()
    for k in range(12):
        p = _start(dest)
        time.sleep(max(0.05 + 0.037 * k, one * (0.5 + 0.15 * k)))
        p.send_signal(sig)
        p.communicate(timeout=60)
        assert p.returncode != 0
        seen.add(_check_whole(dest))
        assert not [n for n in _leftovers(dest) if ".old-" in n], _leftovers(dest)
        if sig == signal.SIGINT:
            assert _leftovers(dest) == [], "an interrupted compile left a temporary folder"
    assert len(seen) > 1, "the child never got to replace the bundle: the test proves nothing"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("after", [0.05, 0.3])
def test_killed_while_writing_keeps_previous_bundle(tmp_path, sig, after):
    dest = tmp_path / "bundle"
    _first_bundle(dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    p = _start(dest, delay=0.05, gens=1)  # 20 files, 50 ms apart: killed mid-write
    time.sleep(after)
    p.send_signal(sig)
    p.communicate(timeout=60)
    assert p.returncode != 0
    assert _check_whole(dest) == 1
    assert {q.name: q.read_bytes() for q in dest.iterdir()} == before
    if sig == signal.SIGINT:
        assert _leftovers(dest) == []
    else:  # SIGKILL leaves the temporary folder; the next run clears it
        assert len(_leftovers(dest)) == 1
        p = _start(dest, gens=1)
        p.communicate(timeout=60)
        assert _leftovers(dest) == [] and _check_whole(dest) == 1


def test_exception_in_a_real_process_keeps_previous_bundle(tmp_path):
    dest = tmp_path / "bundle"
    _first_bundle(dest)
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from edgecomp.bundle import atomic_dir
        with atomic_dir(Path({str(dest)!r})) as t:
            (t / "f0.bin").write_bytes(b"half")
            raise SystemExit(3)
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    assert _check_whole(dest) == 1 and _leftovers(dest) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (needs root); skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_previous_bundle(tiny_disk):
    dest = tiny_disk / "bundle"
    _first_bundle(dest, files=4, size=4096)
    # the next generation needs 20 x 32 KiB = 640 KiB on a 256 KiB disk
    p = _start(dest, files=20, size=32768, gens=1)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "No space left on device" in err
    assert _check_whole(dest, files=4, size=4096) == 1
    assert _leftovers(dest) == []


def test_refuses_to_replace_working_folder_home_or_a_file(tmp_path, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    (work / "model.onnx").write_bytes(b"precious")
    monkeypatch.chdir(work)
    for target in (Path("."), tmp_path, Path("/")):
        with pytest.raises(EdgecompError, match="refusing to replace"):
            with atomic_dir(target):
                pass
    f = tmp_path / "file.txt"
    f.write_text("precious")
    with pytest.raises(EdgecompError):
        with atomic_dir(f):
            pass
    assert (work / "model.onnx").read_bytes() == b"precious" and f.read_text() == "precious"


# ----------------------------------------------------------------------------- real `edgecomp compile`
def _codegen_ready() -> bool:
    try:
        return importlib.util.find_spec("edgecomp.backends.c") is not None
    except ModuleNotFoundError:
        return False


def _small_onnx(path: Path) -> Path:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 64)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b2")]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def _compile(model: Path, out: Path, target="host") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgecomp.cli", "compile", str(model), "--target", target,
                             "--precision", "float32", "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(out.parent),
                            # Ctrl-C as in a terminal, even when this test runs with SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.toolchain
def test_killing_edgecomp_compile_keeps_previous_bundle(tmp_path):
    model = _small_onnx(tmp_path / "small.onnx")
    dest = tmp_path / "bundle"
    t0 = time.monotonic()
    p = _compile(model, dest)
    out, err = p.communicate(timeout=300)
    full = time.monotonic() - t0
    assert p.returncode == 0, err
    assert verify_manifest(dest) == []
    first = json.loads((dest / "manifest.json").read_text())
    snapshot = {q.relative_to(dest).as_posix(): q.read_bytes() for q in dest.rglob("*") if q.is_file()}
    for sig, frac in ((signal.SIGKILL, 0.3), (signal.SIGINT, 0.6), (signal.SIGKILL, 0.9)):
        p = _compile(model, dest)
        time.sleep(full * frac)
        p.send_signal(sig)
        out, err = p.communicate(timeout=300)
        assert dest.is_dir() and verify_manifest(dest) == []
        now = {q.relative_to(dest).as_posix(): q.read_bytes() for q in dest.rglob("*") if q.is_file()}
        if p.returncode == 0:  # it finished before the signal: then it is the same bundle (reproducible)
            assert now == snapshot
        else:
            assert now == snapshot, "an interrupted compile changed the previous bundle"
            if sig == signal.SIGINT:
                # 130 and one message once the CLI runs; a Ctrl-C while Python is still importing
                # ends the process by the signal itself (-SIGINT)
                assert p.returncode in (130, -signal.SIGINT), (p.returncode, err)
                if p.returncode == 130:
                    assert "interrupted" in err and "Traceback" not in err
                assert _leftovers(dest) == []
        assert json.loads((dest / "manifest.json").read_text()) == first
    shutil.rmtree(dest)


def test_compile_onto_a_full_disk_keeps_previous_bundle(tiny_disk, tmp_path):
    model = _small_onnx(tmp_path / "small.onnx")
    dest = tiny_disk / "bundle"
    dest.mkdir()
    write_manifest(dest, {"target": "host", "note": "previous"})
    filler = tiny_disk / "filler"
    free = shutil.disk_usage(tiny_disk).free
    filler.write_bytes(b"\0" * max(free - 8192, 0))
    p = _compile(model, dest)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and "internal error" not in err, err
    assert read_manifest(dest)["note"] == "previous" and verify_manifest(dest) == []
    assert _leftovers(dest) == []


def test_compile_dash_o_dot_refuses_to_replace_the_working_folder(tmp_path):
    model = _small_onnx(tmp_path / "small.onnx")
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compile", str(model), "--target", "host",
                        "--precision", "float32", "-o", "."], capture_output=True, text=True, cwd=str(tmp_path),
                       timeout=300)
    assert r.returncode == 2 and "refusing to replace" in r.stderr
    assert (tmp_path / "small.onnx").is_file()
