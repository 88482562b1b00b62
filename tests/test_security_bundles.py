"""Bundles handed back to edgecomp, and the paths they live at (issue 20 items 4, 5, 9, 11; issue 18's run).

Every attack is reproduced for real: files named PWNED* appear if any character of
a path or any unlisted file was ever interpreted or compiled.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hostile_models as H

pytestmark = pytest.mark.toolchain
ROOT = Path(__file__).resolve().parent.parent


def edgecomp(*args, cwd=None, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgecomp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def one_error(r, code=2) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecomp: error:"), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return lines[0]


def pwned(*roots: Path) -> list[str]:
    return [str(p) for r in roots for p in Path(r).rglob("PWNED*")]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("m")
    (d / "net.onnx").write_bytes(H.gemm())
    np.save(d / "x.npy", np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32))
    return d / "net.onnx"


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory, model) -> Path:
    out = tmp_path_factory.mktemp("b") / "bundle"
    r = edgecomp("compile", model, "-t", "host", "--precision", "float32", "-o", out)
    assert r.returncode == 0, r.stderr
    return out


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def rehash(bundle: Path) -> None:
    """What an attacker does after editing: recompute every sha256 and list every file."""
    man = json.loads((bundle / "manifest.json").read_text())
    man["files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(bundle.iterdir())
                    if p.is_file() and p.name != "manifest.json"}
    (bundle / "manifest.json").write_text(json.dumps(man))


CONSTRUCTOR = '#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) { fclose(fopen("{p}", "w")); }\n'


# --------------------------------------------------------------------------- issue 18: run builds elsewhere
def test_run_builds_outside_and_leaves_the_bundle_as_compiled(host_bundle, model, tmp_path):
    b = copy_bundle(host_bundle, tmp_path / "b")
    before = snapshot(b)
    r = edgecomp("run", b, "--host", "--input", model.parent / "x.npy")
    assert r.returncode == 0, r.stderr
    assert snapshot(b) == before  # no build/ folder, no object file, every hashed file untouched
    from edgecomp.integrity import verify_bundle
    verify_bundle(b)


# --------------------------------------------------------------------------- item 5: tampered bundles
def test_unlisted_source_is_refused_and_never_compiled(host_bundle, tmp_path):
    b = copy_bundle(host_bundle, tmp_path / "b")
    (b / "zz_evil.c").write_text(CONSTRUCTOR.replace("{p}", str(tmp_path / "PWNED_EXTRA")))
    msg = one_error(edgecomp("run", b, "--host"))
    assert "does not list" in msg and "zz_evil.c" in msg
    assert pwned(tmp_path) == []


def test_tampered_weights_with_a_constructor_never_run(host_bundle, tmp_path):
    b = copy_bundle(host_bundle, tmp_path / "b")
    with open(b / "weights.c", "a") as f:
        f.write(CONSTRUCTOR.replace("{p}", str(tmp_path / "PWNED_WEIGHTS")))
    msg = one_error(edgecomp("run", b, "--host"))
    assert "differ from the manifest" in msg and "weights.c" in msg
    assert pwned(tmp_path) == []


def test_rehashed_manifest_cannot_bring_build_rules_or_sources(host_bundle, tmp_path):
    """A manifest anyone can recompute proves nothing about authorship: edgecomp builds with its own
    Makefile and kernels, and compiles no source it does not write."""
    b = copy_bundle(host_bundle, tmp_path / "mk")
    mk = (b / "Makefile").read_text().replace("host: $(BUILD)/host/fw",
                                              f"host: $(BUILD)/host/fw\n\ttouch {tmp_path}/PWNED_MAKE")
    (b / "Makefile").write_text(mk + f"\nX := $(shell touch {tmp_path}/PWNED_SHELL)\n")
    rehash(b)
    msg = one_error(edgecomp("run", b, "--host"))
    assert "Makefile" in msg and "differ from what edgecomp writes" in msg
    b2 = copy_bundle(host_bundle, tmp_path / "src")
    (b2 / "zz_evil.c").write_text(CONSTRUCTOR.replace("{p}", str(tmp_path / "PWNED_SRC")))
    rehash(b2)
    msg = one_error(edgecomp("run", b2, "--host"))
    assert "zz_evil.c" in msg and "not a file edgecomp writes" in msg
    assert pwned(tmp_path) == []


def test_symbolic_links_in_a_bundle_are_refused(host_bundle, tmp_path):
    outside = tmp_path / "outside.c"
    outside.write_text(CONSTRUCTOR.replace("{p}", str(tmp_path / "PWNED_LINK")))
    b = copy_bundle(host_bundle, tmp_path / "b")
    (b / "weights.c").unlink()
    os.symlink(outside, b / "weights.c")
    msg = one_error(edgecomp("run", b, "--host"))
    assert "symbolic links" in msg and "weights.c" in msg
    assert pwned(tmp_path) == []


def test_flash_refuses_a_tampered_bundle_before_anything_else(tmp_path, monkeypatch):
    """edgecomp flash: the extra file of the review (overriding ec_board_init) is refused (exit 2)
    before pyOCD is asked for a probe; the build itself takes only the listed files."""
    from edgecomp import api
    from edgecomp.backends.cortex_m import build
    from edgecomp.errors import ModelError

    (tmp_path / "net.onnx").write_bytes(H.gemm())
    b = tmp_path / "board"
    api.compile_model(tmp_path / "net.onnx", "nucleo-l4r5zi", b, precision="float32")
    (b / "zz_evil.c").write_text("void ec_board_init(void) { for (;;) { } }\n")
    msg = one_error(edgecomp("flash", b))
    assert "does not list" in msg and "zz_evil.c" in msg
    with pytest.raises(ModelError, match="does not list"):
        build(b)
    # the user's own driver, named explicitly (edgecomp flash --source uart.c), is compiled with the bundle
    (b / "zz_evil.c").rename(b / "uart.c")
    elf = build(b, extra_sources=[b / "uart.c"], build_dir=tmp_path / "out").elf
    syms = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    assert " T ec_board_init" in syms
    with pytest.raises(ModelError, match="does not list"):
        build(b)  # not named: refused again


# --------------------------------------------------------------------------- item 4: hostile paths
HOSTILE_DIRS = ["out4/$(shell touch PWNED5)",  # the review's reproducer
                "a b;c'd\"e`touch PWNED_BT`f",  # spaces, ';', quotes, backticks
                "colon:eq=x#pct%*?[x]$$HOME/-dash"]  # make's ':', '=', '#', '%', wildcards, '$$', a leading '-'



@pytest.mark.parametrize("name", HOSTILE_DIRS)
def test_hostile_output_paths_compile_and_run(model, tmp_path, name):
    out = tmp_path / name / "bundle"
    r = edgecomp("compile", model, "-t", "host", "--precision", "float32", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = edgecomp("run", out, "--host", "--input", model.parent / "x.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert pwned(tmp_path) == []


def test_tmpdir_that_splits_into_four_words(model, tmp_path):
    """nm's per-file header lines hold the build path: one that split into four words (TMPDIR
    '~[x]$(touch PWNED_T)\t,  ') was read as a symbol line, an internal error (fuzz_long paths, seed 750000)."""
    tmpdir = tmp_path / "x y\tz ,"
    tmpdir.mkdir()
    out = tmp_path / "b"
    r = edgecomp("compile", model, "-t", "host", "--precision", "float32", "-o", out, env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "manifest.json").read_text())["model_flash_bytes"] > 0


@pytest.mark.qemu
def test_hostile_tmpdir_and_bundle_path_on_cortex_m(model, tmp_path):
    """A TMPDIR with a space and make syntax: every host and Cortex-M build happens in it."""
    tmpdir = tmp_path / "t mp=$(shell touch PWNED_TMP) 'q'"  # '=': gcc left cc*.res files (fuzz_long paths)
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    for tgt in ("host", "cortex-m4"):
        out = tmp_path / f"o,ut $(shell touch PWNED_{tgt}) ;x" / "bundle"
        r = edgecomp("compile", model, "-t", tgt, "--calib", model.parent / "x.npy", "-o", out, env=env)
        assert r.returncode == 0, r.stderr
        r = edgecomp("run", out, *(["--host"] if tgt == "host" else []), "--input", model.parent / "x.npy",
                     env=env)
        assert r.returncode == 0, r.stderr
        assert "instructions" in r.stdout or tgt == "host"
    assert pwned(tmp_path) == []
    assert [p.name for p in tmpdir.iterdir() if p.name != ".ses"] == []  # nothing left (.ses: the Python here)


# --------------------------------------------------------------------------- item 9: manifests and -o
@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"files": "x"}', '{"files": {"../x": "00"}}', "\x00\xff"])
def test_malformed_manifest_is_one_error_for_report_and_run(tmp_path, text):
    b = tmp_path / "b"
    b.mkdir()
    (b / "manifest.json").write_bytes(text.encode("latin-1"))
    for cmd in ("report", "run"):
        one_error(edgecomp(cmd, b))


def test_report_of_a_file_is_one_error(tmp_path, model):
    one_error(edgecomp("report", model))


@pytest.mark.parametrize("out", ["/sys/edgecomp-test/bundle", "/proc/nope/bundle", "FILE/bundle"])
def test_unwritable_output_is_found_before_calibration(model, tmp_path, out):
    (tmp_path / "FILE").write_text("a file, not a folder")
    t = time.monotonic()
    r = edgecomp("compile", model, "-t", "host", "--calib", model.parent / "x.npy", "-o", out, cwd=tmp_path)
    msg = one_error(r)
    assert ("cannot write the output" in msg or "cannot create the output" in msg) and "calibrating" not in r.stderr
    assert time.monotonic() - t < 60


# --------------------------------------------------------------------------- item 11: stale temp folders
def test_temp_folders_of_killed_processes_are_swept(model, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmpdir / f"edgecomp-{dead.pid}-build-abc123"
    (stale / "src").mkdir(parents=True)
    (stale / "src" / "weights.c").write_bytes(b"\0" * 250_000)
    alive = tmpdir / f"edgecomp-{os.getpid()}-build-xyz"  # a running process's folder stays
    alive.mkdir()
    other = tmpdir / "edgecomp-build-notours"
    other.mkdir()
    r = edgecomp("compile", model, "-t", "host", "--precision", "float32", "-o", tmp_path / "b",
                 env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in tmpdir.iterdir()) == sorted([alive.name, other.name])


def test_kill_9_during_a_compile_leaves_a_folder_the_next_run_removes(model, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    p = subprocess.Popen([sys.executable, "-m", "edgecomp.cli", "compile", str(model), "-t", "cortex-m4",
                          "--calib", str(model.parent / "x.npy"), "-o", str(tmp_path / "b")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(tmpdir.glob(f"edgecomp-{p.pid}-*")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.kill()
    p.wait()
    left = list(tmpdir.glob(f"edgecomp-{p.pid}-*"))
    assert left, "the compile never made its temporary folder"
    r = edgecomp("compile", model, "-t", "host", "--precision", "float32", "-o", tmp_path / "c",
                 env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in left)
