"""Raspberry Pi bundles: contents, reproducibility, run.py / probe.py against ONNX Runtime and LiteRT."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecomp.backends.rpi import (ORT_PIN, read_probe, plot_probe, render_probe_table, write_rpi_bundle)
from edgecomp.bundle import verify_manifest
from edgecomp.errors import EdgecompError, ModelError, ToolError, UnsupportedError
from edgecomp.targets import load_target
from layer_zoo import export_small_cnn


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    return export_small_cnn(tmp_path_factory.mktemp("cnn") / "cnn.onnx")


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    # stand-in images in [0, 1] (loading MNIST costs ~10 s; the numbers compared here do not need it)
    return np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)


@pytest.fixture(scope="module")
def bundles(cnn, calib, tmp_path_factory):
    d = tmp_path_factory.mktemp("rpi-bundles")
    return {"float32": (write_rpi_bundle(cnn, "rpi4", d / "fp32", precision="float32"), d / "fp32"),
            "int8": (write_rpi_bundle(cnn, "rpi5", d / "int8", calib=calib), d / "int8")}


def ort_run(model: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def run_py(bundle: Path, x_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "run.py"), str(x_path), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=120, cwd=out.parent)


def test_targets_say_what_a_pi_is():
    pi4, pi5 = load_target("rpi4"), load_target("rpi5")
    assert (pi4.kind, pi4.cpu, pi4.raw["cores"], pi4.raw["dotprod"]) == ("rpi", "cortex-a72", 4, False)
    assert (pi5.kind, pi5.cpu, pi5.raw["cores"], pi5.raw["dotprod"]) == ("rpi", "cortex-a76", 4, True)
    for t in (pi4, pi5):
        assert t.raw["os"]["python"] == "3.11"
        assert t.raw["session"]["graph_optimization_level"] == "all"


def test_bundle_files_and_manifest(bundles):
    man, d = bundles["int8"]
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "manifest.json", "model.onnx", "probe.py",
                                                    "requirements.txt", "run.py"]
    assert verify_manifest(d) == []
    assert man["target"] == "rpi5" and man["target_info"]["dotprod"] is True
    assert man["precision"] == "int8" and man["runtime"]["name"] == "onnxruntime"
    assert man["inputs"] == [{"name": "input", "shape": [1, 1, 28, 28], "dtype": "float32", "quantization": None}]
    assert man["outputs"][0]["shape"] == [1, 10]
    assert man["ops"]["QuantizeLinear"] > 0 and man["ops"]["DequantizeLinear"] > 0
    text = (d / "manifest.json").read_text()
    assert "/tmp" not in text and str(Path.home()) not in text
    reqs = (d / "requirements.txt").read_text()
    assert ORT_PIN in reqs and "numpy==" in reqs
    readme = (d / "README.md").read_text()
    assert "1.27.0" in readme and "cpuinfo" in readme and "probe.py" in readme
    # the runner needs neither edgecomp nor anything but numpy + the runtime
    for f in ("run.py", "probe.py"):
        src = (d / f).read_text()
        imports = {m.group(1).split(".")[0] for m in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", src, re.M)}
        assert imports <= {"__future__", "argparse", "json", "os", "platform", "re", "subprocess", "sys", "time",
                           "numpy", "onnxruntime", "ai_edge_litert", "importlib", "run"}, imports
    # QDQ S8S8: int8 weights (symmetric) and int8 activations
    import onnx
    m = onnx.load(str(d / "model.onnx"))
    zps = [i for i in m.graph.initializer if "zero_point" in i.name]
    kinds = {i.data_type for i in zps}
    assert onnx.TensorProto.INT8 in kinds and onnx.TensorProto.UINT8 not in kinds  # int32 ones: biases
    _, fp = bundles["float32"]
    assert json.loads((fp / "manifest.json").read_text())["precision"] == "float32"


def test_same_model_twice_gives_identical_bytes(cnn, calib, tmp_path):
    for prec in ("float32", "int8"):
        a = write_rpi_bundle(cnn, "rpi4", tmp_path / f"a-{prec}", precision=prec, calib=calib)
        b = write_rpi_bundle(cnn, "rpi4", tmp_path / f"b-{prec}", precision=prec, calib=calib)
        assert a == b
        for f in a["files"]:
            assert (tmp_path / f"a-{prec}" / f).read_bytes() == (tmp_path / f"b-{prec}" / f).read_bytes()
        assert (tmp_path / f"a-{prec}" / "manifest.json").read_bytes() == \
            (tmp_path / f"b-{prec}" / "manifest.json").read_bytes()


@pytest.mark.parametrize("prec", ["float32", "int8"])
def test_run_py_matches_onnxruntime_in_process(bundles, calib, tmp_path, prec):
    _, d = bundles[prec]
    x = calib[:7]
    np.save(tmp_path / "x.npy", x)
    r = run_py(d, tmp_path / "x.npy", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "out" / "output.npy")
    ref = ort_run(d / "model.onnx", x)
    assert y.shape == (7, 10)
    np.testing.assert_array_equal(y, ref)
    # one sample without its batch axis, from a .npz
    np.savez(tmp_path / "one.npz", input=x[0])
    r = run_py(d, tmp_path / "one.npz", tmp_path / "out1")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out1" / "output.npy"), ref[:1])


def test_int8_bundle_stays_close_to_float(bundles, calib):
    x = calib[:16]
    y8 = ort_run(bundles["int8"][1] / "model.onnx", x)
    y32 = ort_run(bundles["float32"][1] / "model.onnx", x)
    # untrained weights on noise give tiny logits, so compare shapes of the outputs, not classes
    assert np.corrcoef(y8.ravel(), y32.ravel())[0, 1] > 0.95
    assert np.abs(y8 - y32).max() < 0.3 * np.abs(y32).max()


def test_run_py_says_what_is_wrong_with_the_input(bundles, tmp_path):
    _, d = bundles["float32"]
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 28, 28), np.float32))
    r = run_py(d, tmp_path / "bad.npy", tmp_path / "o")
    assert r.returncode != 0 and "wants shape [1, 1, 28, 28]" in r.stderr and "Traceback" not in r.stderr


def test_probe_json_table_profile_accuracy(bundles, calib, tmp_path):
    _, d = bundles["int8"]
    rng = np.random.default_rng(1)
    xt, yt = rng.random((50, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 50)
    np.savez(tmp_path / "test.npz", x=xt[:50], y=yt[:50])
    r = subprocess.run([sys.executable, str(d / "probe.py"), "--runs", "7", "--warmup", "2", "--threads", "1,2",
                        "--profile", "--data", str(tmp_path / "test.npz"), "--json", str(tmp_path / "p.json")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    p = read_probe(tmp_path / "p.json")
    assert [x["threads"] for x in p["results"]] == [1, 2]
    for x in p["results"]:
        assert x["runs"] == 7 and 0 < x["min_ms"] <= x["p50_ms"] <= x["p90_ms"] <= x["p99_ms"] <= x["max_ms"]
    assert p["runtime"] == "onnxruntime" and p["runtime_version"] == ort.__version__
    assert p["precision"] == "int8" and p["target"] == "rpi5"
    ops = {row["op_type"] for row in p["profile"]}
    assert any(op.startswith("QLinear") or op == "QGemm" for op in ops), ops
    assert abs(sum(row["share"] for row in p["profile"]) - 1) < 1e-6
    want = (ort_run(d / "model.onnx", xt[:50]).argmax(1) == yt[:50]).sum()
    assert p["accuracy"] == {"samples": 50, "correct": int(want), "top1": want / 50}
    for key in ("governor", "freq_mhz", "temp_c"):
        assert key in p["system"]["before"] and key in p["system"]["after"]
    assert "| 1 |" in r.stdout and "accuracy" in r.stdout
    # the same numbers in the line format every edgecomp probe prints
    from edgecomp.probe import parse_probe_blocks
    blocks = parse_probe_blocks(r.stdout)
    assert [(b.model, b.unit, b.complete) for b in blocks] == [("cnn", "ns", True)] * 2
    assert [b.total for b in blocks] == [round(x["p50_ms"] * 1e6) for x in p["results"]]
    table = render_probe_table(p)
    assert "| threads | p50 ms | p90 ms | p99 ms | mean ms | min ms | runs |" in table
    assert "| op type |" in table and "top-1" in table
    png = plot_probe(p, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_json_is_checked_on_the_host():
    with pytest.raises(ToolError, match="did not return JSON"):
        read_probe("Traceback (most recent call last): ...")
    with pytest.raises(ToolError, match="not an edgecomp probe result"):
        read_probe({"results": []})


def test_tflite_bundle_runs_through_litert(mlperf_dir, tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    for name, prec in (("ad01_int8", "int8"), ("kws_ref_model_float32", "float32")):
        man = write_rpi_bundle(mlperf_dir / f"{name}.tflite", "rpi4", tmp_path / name)
        d = tmp_path / name
        assert man["runtime"]["name"] == "litert" and man["precision"] == prec
        assert (d / "model.tflite").read_bytes() == (mlperf_dir / f"{name}.tflite").read_bytes()
        assert "ai-edge-litert==" in (d / "requirements.txt").read_text()
        io = man["inputs"][0]
        rng = np.random.default_rng(0)
        shape = [3] + io["shape"][1:]
        x = rng.integers(-128, 128, size=shape).astype(np.int8) if prec == "int8" else \
            rng.standard_normal(shape).astype(np.float32)
        if prec == "int8":
            assert io["quantization"]["scale"][0] > 0 and len(io["quantization"]["zero_point"]) == 1
        np.save(tmp_path / "x.npy", x)
        r = run_py(d, tmp_path / "x.npy", tmp_path / f"out-{name}")
        assert r.returncode == 0, r.stderr
        it = Interpreter(model_path=str(mlperf_dir / f"{name}.tflite"))
        it.allocate_tensors()
        ref = []
        for i in range(3):
            it.set_tensor(it.get_input_details()[0]["index"], x[i:i + 1])
            it.invoke()
            ref.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
        out_name = man["outputs"][0]["name"]
        y = np.load(tmp_path / f"out-{name}" / (re.sub(r"[^A-Za-z0-9._-]", "_", out_name).lstrip(".") + ".npy"))
        np.testing.assert_array_equal(y, np.concatenate(ref))
        r = subprocess.run([sys.executable, str(d / "probe.py"), "--runs", "3", "--warmup", "1", "--threads", "1",
                            "--json", str(tmp_path / "p.json")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        p = read_probe(tmp_path / "p.json")
        assert p["runtime"] == "litert" and p["results"][0]["runs"] == 3


def test_compile_through_the_api_and_cli(cnn, calib, tmp_path, capsys):
    from edgecomp.api import compile_model
    man = compile_model(cnn, "rpi4", tmp_path / "api", calib=calib)
    assert man["target"] == "rpi4" and man["precision"] == "int8" and man["runtime"]["name"] == "onnxruntime"
    np.save(tmp_path / "calib.npy", calib)
    from edgecomp.cli import main
    rc = main(["compile", str(cnn), "--target", "rpi5", "--precision", "float32", "-o", str(tmp_path / "cli"),
               "--json"])
    assert rc == 0
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["precision"] == "float32"


def test_cli_compile_report_for_a_tflite_bundle(mlperf_dir, tmp_path, capsys):
    from edgecomp.cli import main
    rc = main(["compile", str(mlperf_dir / "kws_ref_model.tflite"), "--target", "rpi4", "-o", str(tmp_path / "k")])
    out = capsys.readouterr().out
    assert rc == 0 and "edgecomp bundle for rpi4" in out and "scale=0.584703" in out and "parameters:" in out


def test_user_mistakes_are_clear_errors(cnn, tmp_path):
    with pytest.raises(ModelError, match="needs calibration data"):
        write_rpi_bundle(cnn, "rpi4", tmp_path / "x")
    with pytest.raises(UnsupportedError, match="not a Raspberry Pi"):
        write_rpi_bundle(cnn, "cortex-m4", tmp_path / "x", precision="float32")
    with pytest.raises(EdgecompError, match="unknown target"):
        write_rpi_bundle(cnn, "rpi9", tmp_path / "x", precision="float32")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        write_rpi_bundle(bad, "rpi4", tmp_path / "x", precision="float32")
    bad_tfl = tmp_path / "bad.tflite"
    bad_tfl.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="LiteRT cannot load"):
        write_rpi_bundle(bad_tfl, "rpi4", tmp_path / "x")
    with pytest.raises(ModelError, match="does not exist"):
        write_rpi_bundle(tmp_path / "missing.onnx", "rpi4", tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_int8_tflite_bundle_quantizes_float_input(mlperf_dir, tmp_path):
    man = write_rpi_bundle(mlperf_dir / "ad01_int8.tflite", "rpi5", tmp_path / "b")
    q = man["inputs"][0]["quantization"]
    s, z = q["scale"][0], q["zero_point"][0]
    xf = np.random.default_rng(4).standard_normal((2, 640)).astype(np.float32) * 3 * s * 40
    xq = np.clip(np.round(xf.astype(np.float64) / s) + z, -128, 127).astype(np.int8)
    np.save(tmp_path / "xf.npy", xf)
    np.save(tmp_path / "xq.npy", xq)
    assert run_py(tmp_path / "b", tmp_path / "xf.npy", tmp_path / "of").returncode == 0
    assert run_py(tmp_path / "b", tmp_path / "xq.npy", tmp_path / "oq").returncode == 0
    (a,), (b,) = list((tmp_path / "of").glob("*.npy")), list((tmp_path / "oq").glob("*.npy"))
    np.testing.assert_array_equal(np.load(a), np.load(b))
    readme = (tmp_path / "b" / "README.md").read_text()
    assert f"int8 scale {s}" in readme
