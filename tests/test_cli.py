"""The command line as a user meets it: one clear message, a non-zero exit, nothing half-written."""
from __future__ import annotations

import subprocess
import sys

import pytest


def edgecomp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgecomp.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, b"TFL3" + b"\x00" * 3])
@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_bad_model_file_one_message_exit_2_no_bundle(tmp_path, content, suffix):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    out = tmp_path / "bundle"
    r = edgecomp("compile", str(bad), "--target", "cortex-m4", "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("edgecomp: error:") and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [bad.name]  # no temporary leftovers


def test_missing_model_and_unknown_target(tmp_path):
    r = edgecomp("compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_run_on_a_folder_that_is_not_a_bundle(tmp_path):
    r = edgecomp("run", str(tmp_path))
    assert r.returncode == 2 and "not an edgecomp bundle" in r.stderr


def test_version():
    r = edgecomp("--version")
    assert r.returncode == 0 and r.stdout.startswith("edgecomp ")
