"""The output-folder rule (issue 18 "Data loss", issue 20 item 3): never lose a user's files.

An existing folder is replaced only when edgecomp wrote it (its manifest lists what it wrote);
anything else is refused with exit 2 and left untouched, unless --force, and even then nothing
edgecomp did not write is deleted or overwritten.  An unwritable -o is found before any work.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgecomp import cli
from edgecomp.bundle import atomic_dir, read_manifest, verify_manifest, write_manifest
from edgecomp.errors import EdgecompError
from edgecomp.outputs import check_output_dir, check_output_file

ROOT = Path(__file__).resolve().parent.parent


def _onnx(path: Path) -> Path:
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


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _project(root: Path) -> dict[str, bytes]:
    """A user's project folder: their sources and notes."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (root / "NOTES.md").write_text("my notes\n")
    return _snapshot(root)


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, whatever the working folder


def _compile(model: Path, out: Path, *extra: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compile", str(model), "--target", "host",
                        "--precision", "float32", "-o", str(out), *extra], capture_output=True, text=True,
                       timeout=300, cwd=str(out.parent) if out.parent.is_dir() else None, env=ENV)
    return r.returncode, r.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _onnx(tmp_path_factory.mktemp("m") / "small.onnx")


def test_compile_onto_a_project_folder_is_refused_and_leaves_it_untouched(tmp_path, model):
    proj = tmp_path / "proj"
    before = _project(proj)
    rc, err = _compile(model, proj)
    assert rc == 2, err
    assert err.startswith("edgecomp: error:") and len(err.strip().splitlines()) == 1, err
    assert "not an edgecomp output folder" in err and "--force" in err and "Traceback" not in err
    assert _snapshot(proj) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temporary folder left


@pytest.mark.toolchain
def test_an_edgecomp_bundle_is_replaced_and_a_bundle_with_user_files_is_not(tmp_path, model):
    out = tmp_path / "b"
    assert _compile(model, out)[0] == 0
    (out / "build").mkdir()  # what `make BUILD=build` and the README's run command leave behind
    (out / "build" / "fw").write_bytes(b"\x7fELF")
    (out / "ec_input.bin").write_bytes(bytes(64))
    assert _compile(model, out)[0] == 0, "a bundle edgecomp wrote is replaced"
    assert verify_manifest(out) == [] and not (out / "build").exists()
    (out / "my_uart.c").write_text("void ec_putc(char c) { (void)c; }\n")
    before = _snapshot(out)
    rc, err = _compile(model, out)
    assert rc == 2 and "edgecomp did not write (my_uart.c)" in err, err
    assert _snapshot(out) == before


@pytest.mark.toolchain
def test_force_writes_into_a_folder_and_deletes_only_what_edgecomp_wrote(tmp_path, model):
    proj = tmp_path / "proj"
    before = _project(proj)
    rc, err = _compile(model, proj, "--force")
    assert rc == 0, err
    man = read_manifest(proj)
    assert "model.c" in man["files"] and "NOTES.md" not in man["files"] and "src/main.c" not in man["files"]
    now = _snapshot(proj)
    assert all(now[k] == v for k, v in before.items()), "the user's files are kept byte for byte"
    # a file the previous run wrote and this one does not is deleted; the user's are not
    (proj / "model.c").write_text("/* edited by the user, but edgecomp wrote it */\n")
    man["files"]["old_generated.c"] = "0" * 64
    (proj / "old_generated.c").write_text("/* from an older edgecomp */\n")
    (proj / "manifest.json").write_text(json.dumps(man))
    rc, err = _compile(model, proj, "--force")
    assert rc == 0, err
    assert not (proj / "old_generated.c").exists() and verify_manifest(proj) == []
    assert all(_snapshot(proj)[k] == v for k, v in before.items())


@pytest.mark.toolchain
def test_force_never_overwrites_a_file_edgecomp_did_not_write(tmp_path, model):
    proj = tmp_path / "proj"
    before = _project(proj)
    (proj / "main.c").write_text("/* the user's own main.c */\n")  # a bundle has a main.c too
    before = _snapshot(proj)
    rc, err = _compile(model, proj, "--force")
    assert rc == 2 and "would overwrite" in err and "main.c" in err, err
    assert _snapshot(proj) == before
    assert not [p for p in proj.iterdir() if p.name.startswith(".edgecomp")]


def test_a_manifest_listing_paths_outside_is_not_edgecomps(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "b"
    out.mkdir()
    (out / "x.c").write_text("int x;\n")
    (out / "manifest.json").write_text(json.dumps({"tool": "edgecomp", "files": {"x.c": "0", "../victim.txt": "0"}}))
    with pytest.raises(EdgecompError, match="not an edgecomp output folder"):
        check_output_dir(out)
    before = _snapshot(out)
    with pytest.raises(EdgecompError, match="would overwrite .*manifest.json"):  # not edgecomp's manifest
        with atomic_dir(out, force=True) as tmp:
            (tmp / "y.c").write_text("int y;\n")
            write_manifest(tmp, {"target": "host"})
    assert victim.read_text() == "keep me" and _snapshot(out) == before


def test_empty_folder_symlink_file_and_root(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output_dir(empty).mode == "replace"
    assert check_output_dir(tmp_path / "new" / "deeper").mode == "create"
    (tmp_path / "link").symlink_to(empty)
    (tmp_path / "f").write_text("x")
    for bad, what in ((tmp_path / "link", "symbolic link"), (tmp_path / "f", "not a folder"),
                      (tmp_path / "f" / "sub", "is not a folder"), (Path("/"), "root folder")):
        with pytest.raises(EdgecompError, match=what):
            check_output_dir(bad, force=True)


@pytest.mark.parametrize("out", ["/proc/nope", "/proc/nope/deeper", "/sys/nope"])
def test_unwritable_output_found_before_any_work(tmp_path, model, out):
    # the calibration file does not exist: had the output been checked after calibration,
    # that error would come first
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compile", str(model), "--calib",
                        str(tmp_path / "missing.npy"), "-o", out], capture_output=True, text=True, timeout=120,
                       env=ENV)
    assert r.returncode == 2, r.stderr
    assert f"cannot write the output {out}" in r.stderr and "calibration" not in r.stderr, r.stderr
    assert "internal error" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 60


@pytest.fixture
def read_only_dir(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_read_only_parent(read_only_dir, model, capsys):
    rc = cli.main(["compile", str(model), "--precision", "float32", "--target", "host",
                   "-o", str(read_only_dir / "bundle")])
    err = capsys.readouterr().err
    assert rc == 2 and "Read-only file system" in err, err
    with pytest.raises(EdgecompError, match="Read-only file system"):
        check_output_file(read_only_dir / "x.png", "--plot")


def test_compress_and_demo_refuse_a_project_folder_before_training(tmp_path, capsys):
    proj = tmp_path / "proj"
    before = _project(proj)
    for argv in (["compress", "--quick", "-o", str(proj)], ["demo", "--quick", "-o", str(proj)]):
        t0 = time.monotonic()
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "not an edgecomp output folder" in err, err
        assert time.monotonic() - t0 < 20, "refused before any training"
        assert _snapshot(proj) == before


def test_compress_in_place_keeps_foreign_files_under_force(tmp_path):
    from edgecomp.compress.search import OUTPUT_NAMES
    from edgecomp.outputs import prepare_in_place

    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("user")
    (out / "summary.json").write_text("{}")  # the user's, and compress writes one
    with pytest.raises(EdgecompError, match="summary.json"):
        prepare_in_place(check_output_dir(out, force=True), OUTPUT_NAMES)
    (out / "summary.json").unlink()
    foreign = prepare_in_place(check_output_dir(out, force=True), OUTPUT_NAMES)
    (out / "pareto.md").write_text("table")
    man = write_manifest(out, {"kind": "compress"}, skip=foreign)
    assert set(man["files"]) == {"pareto.md"} and (out / "mine.txt").read_text() == "user"
    # next run (force again): what compress wrote goes, the user's file stays
    prepare_in_place(check_output_dir(out, force=True), OUTPUT_NAMES)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
