"""Compiling twice gives the same bytes: no timestamps, no absolute paths, manifest with hashes.

Each case compiles one model with the same options twice, through the real CLI,
from different working folders, with different TMPDIRs and into differently
named output folders, then compares every file byte for byte.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgecomp
from edgecomp.bundle import read_manifest, sha256_file, verify_manifest


def _have(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
        return False


ROOT = Path(__file__).resolve().parent.parent


def _onnx(path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 16)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b2")]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def _compile_twice(tmp_path: Path, model: Path, args: list[str]) -> tuple[Path, Path]:
    outs = []
    for k, (cwd_name, out_name) in enumerate((("work-a", "bundle"), ("elsewhere-b", "other_name"))):
        cwd = tmp_path / cwd_name
        tdir = tmp_path / f"tmp{k}"
        cwd.mkdir()
        tdir.mkdir()
        out = cwd / "deeper" / out_name
        env = dict(os.environ, TMPDIR=str(tdir))
        r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compile", str(model), *args, "-o", str(out)],
                           capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append(out)
    return outs[0], outs[1]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check(tmp_path: Path, a: Path, b: Path, model: Path, options: dict) -> dict:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differ = [f for f in fa if fa[f] != fb[f]]
    assert differ == [], f"files differ between two identical compiles: {differ}"
    # no absolute path of this run (folders, temp folders, the model's location) inside any file
    needles = {str(tmp_path), str(a), str(b), str(model.resolve()), str(model.parent), "edgecomp-build-",
               str(Path.home()), os.getcwd()}
    for name, data in fa.items():
        for s in needles:
            assert s.encode() not in data, f"{name} contains the path {s!r}"
    man = read_manifest(a)
    assert man["tool"] == "edgecomp" and man["tool_version"] == edgecomp.__version__
    for k, v in options.items():
        assert man["options"][k] == v, (k, man["options"])
    assert verify_manifest(a) == [] and verify_manifest(b) == []
    hashed = set(man["files"])
    assert hashed == set(fa) - {"manifest.json"}, "the manifest must hash every file of the bundle"
    for rel, digest in man["files"].items():
        assert sha256_file(a / rel) == digest
    text = json.dumps(man)
    assert not re.search(r'"(time|date|created|timestamp|built_at|host(name)?|user)"\s*:', text), \
        "the manifest records when/where it was made"
    return man


@pytest.mark.toolchain
def test_float_host_bundle_is_reproducible(tmp_path):
    model = _onnx(tmp_path / "net.onnx")
    a, b = _compile_twice(tmp_path, model, ["--target", "host", "--precision", "float32"])
    _check(tmp_path, a, b, model, {"precision": "float32"})


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.toolchain
def test_int8_cortex_m4_bundle_is_reproducible(tmp_path):
    """ORT calibration + QDQ lowering + firmware: still the same bytes."""
    model = _onnx(tmp_path / "net.onnx")
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(3).standard_normal((16, 2, 4, 4)).astype(np.float32))
    a, b = _compile_twice(tmp_path, model, ["--target", "cortex-m4", "--calib", str(calib), "--per-tensor"])
    man = _check(tmp_path, a, b, model, {"precision": "int8", "per_channel": False})
    assert man["inputs"][0]["dtype"] == "int8"


@pytest.mark.toolchain
def test_tflite_host_bundle_is_reproducible(tmp_path, mlperf_dir):
    model = tmp_path / "kws.tflite"
    shutil.copyfile(mlperf_dir / "kws_ref_model.tflite", model)
    a, b = _compile_twice(tmp_path, model, ["--target", "host"])
    _check(tmp_path, a, b, model, {})


def test_rpi_bundle_is_reproducible(tmp_path):
    model = _onnx(tmp_path / "net.onnx")
    a, b = _compile_twice(tmp_path, model, ["--target", "rpi4", "--precision", "float32"])
    _check(tmp_path, a, b, model, {"precision": "float32"})
