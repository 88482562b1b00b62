"""A fresh venv with only the bundle's requirements.txt (real pip, from PyPI) runs run.py and probe.py,
and gives the same outputs as ONNX Runtime in this process.  This is what a user does on the Pi."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecomp.backends.rpi import ORT_PIN, read_probe, write_rpi_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv_bundles(tmp_path_factory):
    from layer_zoo import export_small_cnn
    d = tmp_path_factory.mktemp("venv")
    cnn = export_small_cnn(d / "cnn.onnx")
    calib = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
    write_rpi_bundle(cnn, "rpi5", d / "fp32", precision="float32")
    write_rpi_bundle(cnn, "rpi5", d / "int8", calib=calib)
    assert (d / "fp32" / "requirements.txt").read_text() == (d / "int8" / "requirements.txt").read_text()
    venv = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--only-binary=:all:",
                        "-r", str(d / "fp32" / "requirements.txt")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"pip install -r requirements.txt failed:\n{r.stdout}\n{r.stderr}"
    return d, py


def test_venv_has_only_the_pinned_runtime(venv_bundles):
    d, py = venv_bundles
    r = subprocess.run([str(py), "-c", "import onnxruntime, numpy; print(onnxruntime.__version__, numpy.__version__)\n"
                                      "try:\n import edgecomp; print('edgecomp')\nexcept ImportError: pass"],
                       capture_output=True, text=True, timeout=120, cwd=d,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # (the venv's own path only)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == ORT_PIN.split("==")[1] and "edgecomp" not in r.stdout


@pytest.mark.parametrize("prec", ["fp32", "int8"])
def test_run_py_in_a_fresh_venv_equals_ort_in_process(venv_bundles, prec):
    d, py = venv_bundles
    x = np.random.default_rng(5).random((6, 1, 28, 28), dtype=np.float32)
    np.save(d / f"x-{prec}.npy", x)
    r = subprocess.run([str(py), str(d / prec / "run.py"), f"x-{prec}.npy", "-o", f"out-{prec}"],
                       capture_output=True, text=True, timeout=120, cwd=d)
    assert r.returncode == 0, r.stderr
    y = np.load(d / f"out-{prec}" / "output.npy")
    s = ort.InferenceSession(str(d / prec / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    assert y.shape == ref.shape == (6, 10)
    if prec == "int8":
        np.testing.assert_array_equal(y, ref)
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)
    r = subprocess.run([str(py), str(d / prec / "probe.py"), "--runs", "5", "--warmup", "1", "--threads", "1,2",
                        "--json", f"probe-{prec}.json"], capture_output=True, text=True, timeout=120, cwd=d)
    assert r.returncode == 0, r.stderr
    p = read_probe(Path(d / f"probe-{prec}.json"))
    assert p["runtime_version"] == ORT_PIN.split("==")[1] and len(p["results"]) == 2
