"""Untrusted models and sample files: one clear error (exit 2), bounded time and memory (issue 20 items 2, 6, 9, 11).

Each case is the attack of the review, run through the command line as a user would.
"""
from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hostile_models as H

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def edgecomp(*args, cwd=None, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgecomp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args) -> _Result:
    """The command line in this process (fast: no interpreter start per case), as fuzz_long.py runs it."""
    import contextlib

    from edgecomp import cli as ec_cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = ec_cli.main([str(a) for a in args])
    return _Result(rc, out.getvalue(), err.getvalue())


def one_error(r, code=2) -> str:
    """Exit ``code``, the last stderr line one ``edgecomp: error:`` (progress lines may precede it)."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and not ln.startswith("\rcalibrating")
             and not ln.startswith("calibrating") and not ln.startswith("edgecomp: warning:")]
    assert len(lines) == 1 and lines[0].startswith("edgecomp: error:"), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def gemm_model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("g")
    (d / "net.onnx").write_bytes(H.gemm())
    return d / "net.onnx"


# --------------------------------------------------------------------------- items 6 and 9: sample files
def _npz_bomb(path: Path, declared: int, actual: int) -> None:
    """A small deflated .npz whose .npy header declares ``declared`` rows of 8 float32 and whose
    member holds ``actual`` rows of zeros (2.4 GB of zeros deflate to a few MB)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (declared, 8)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            chunk = b"\0" * (1 << 22)
            left = actual * 32
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)


def _bad_sample_files(d: Path) -> dict[str, Path]:
    files = {
        "inf": np.array([[1.0] * 7 + [np.inf]], np.float32),
        "all_nan": np.full((4, 8), np.nan, np.float32),
        "huge_3e38": np.full((4, 8), 3e38, np.float32),
        "scalar": np.float32(1.0),
        "string": np.array([["a"] * 8]),
        "structured": np.zeros((4,), dtype=[("a", "f4", (8,))]),
    }
    out = {}
    for k, v in files.items():
        np.save(d / f"{k}.npy", v)
        out[k] = d / f"{k}.npy"
    np.savez(d / "pickle.npz", x=np.array([{"os": "system"}], dtype=object))
    out["pickle_npz"] = d / "pickle.npz"
    return out


@pytest.mark.toolchain
def test_bad_calibration_and_input_files_are_one_error(gemm_model, tmp_path):
    files = _bad_sample_files(tmp_path)
    r = cli("compile", gemm_model, "-t", "host", "--precision", "float32", "-o", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    for name, f in files.items():
        one_error(cli("compile", gemm_model, "-t", "host", "--calib", f, "-o", tmp_path / f"c_{name}"))
        assert not (tmp_path / f"c_{name}").exists()
        one_error(cli("run", tmp_path / "b", "--host", "--input", f))


@pytest.mark.parametrize("declared,actual", [(75_000_000, 20_000_000),  # 2.4 GB declared, 640 MB of zeros
                                             (300_000_000, 1_000)])  # a header claiming 9.6 GB
def test_npz_decompression_bomb_is_refused_before_loading(gemm_model, tmp_path, declared, actual):
    bomb = tmp_path / "bomb.npz"
    _npz_bomb(bomb, declared, actual)
    assert bomb.stat().st_size < 1_000_000
    hwm = tmp_path / "peak"
    # the CLI in a child that writes its own peak memory (VmHWM) when it ends: RUSAGE_CHILDREN would
    # hold the largest child of the whole test session, and ru_maxrss carries a parent's peak over exec
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: open({str(hwm)!r}, 'w').write(next(l.split()[1] for l in "
            "open('/proc/self/status') if l.startswith('VmHWM'))))\n"
            "from edgecomp.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "compile", str(gemm_model), "-t", "host", "--calib", str(bomb),
                        "-o", str(tmp_path / "b")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    msg = one_error(r)
    assert "bytes" in msg and "EDGECOMP_MAX_ARRAY_MB" in msg
    peak = int(hwm.read_text())  # kB
    assert peak < 600 * 1024, f"{peak // 1024} MiB"  # never near the gigabytes declared


# --------------------------------------------------------------------------- item 2: calibration bombs
@pytest.mark.parametrize("name", sorted(H.calibration_bombs()))
@pytest.mark.parametrize("target", ["cortex-m4", "rpi4"])
def test_calibration_bombs_are_refused_before_calibration(tmp_path, name, target):
    """The C path's full checks, and for ONNX Runtime targets the checks any runtime needs (a Reshape to
    the wrong element count got as far as ORT's calibration on rpi4: found by fuzz_long's calib target)."""
    if target == "rpi4" and name.startswith("loop"):
        pytest.skip("ONNX Runtime runs Loop: the calibration child's limits stop it (next test)")
    data, shape = H.calibration_bombs()[name]
    (tmp_path / "m.onnx").write_bytes(data)
    np.save(tmp_path / "c.npy", np.zeros((2,) + shape[1:], np.float32))
    t = time.monotonic()
    r = cli("compile", tmp_path / "m.onnx", "-t", target, "--calib", tmp_path / "c.npy", "-o", tmp_path / "b")
    msg = one_error(r)
    assert "calibrating" not in r.stderr  # refused by the checks, before ONNX Runtime ran the model
    assert "could not calibrate" not in msg and "calibration stopped" not in msg, msg
    assert time.monotonic() - t < 30


@pytest.mark.parametrize("case", ["loop", "runtime_alloc"])
def test_calibration_child_has_time_and_memory_limits(tmp_path, case):
    """An ONNX Runtime target runs ops the C backend does not: what passes the checks is stopped by the
    calibration child's limits (a Loop with trip count 1e15; a tensor whose size shows only at run time)."""
    (tmp_path / "m.onnx").write_bytes(H.loop() if case == "loop" else H.runtime_alloc(1 << 30))
    np.save(tmp_path / "c.npy", np.zeros((2, 4), np.float32))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    t = time.monotonic()
    r = edgecomp("compile", tmp_path / "m.onnx", "-t", "rpi4", "--calib", tmp_path / "c.npy", "-o", tmp_path / "b",
                 env={"EDGECOMP_CALIB_STALL": "3", "EDGECOMP_CALIB_MEMORY_MB": "2048", "TMPDIR": str(tmpdir)})
    msg = one_error(r)
    assert "calibration stopped" in msg
    assert ("EDGECOMP_CALIB_STALL" if case == "loop" else "EDGECOMP_CALIB_MEMORY_MB") in msg
    assert time.monotonic() - t < 40
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmpdir.iterdir() if p.name != ".ses"] == []  # ORT's temp folders too
    # the limited child never grew past its address-space limit
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2048 * 1024


# --------------------------------------------------------------------------- item 9: hostile values
def _qdq(mutate) -> bytes:
    import fuzz_long
    m = fuzz_long.seed_qdq_net()
    mutate(m)
    return m.SerializeToString()


def _set_init(m, name, value):
    for i, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(value, np.float32), name))


def _clip_on_integers(m):  # fuzz_long.py compile target, seed 810: DequantizeLinear replaced by Clip
    n = next(n for n in m.graph.node if n.name == "dq_in")
    n.op_type = "Clip"


QDQ_CASES = {"scale_inf": lambda m: _set_init(m, "cs", np.inf), "scale_nan": lambda m: _set_init(m, "cs", np.nan),
             "scale_0": lambda m: _set_init(m, "cs", 0.0), "scale_negative": lambda m: _set_init(m, "ys", -0.2),
             "weight_scale_nan": lambda m: _set_init(m, "ws", np.full(4, np.nan)),
             "int8_clip_seed_810": _clip_on_integers}


@pytest.mark.parametrize("case", sorted(QDQ_CASES))
def test_hostile_qdq_values_are_one_error(tmp_path, case):
    (tmp_path / "q.onnx").write_bytes(_qdq(QDQ_CASES[case]))
    msg = one_error(cli("compile", tmp_path / "q.onnx", "-t", "host", "-o", tmp_path / "b"))
    assert "scale" in msg or "QuantizeLinear" in msg


def _q(name, shape, scale, zp, **kw):
    return dict(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp], **kw)


def _fc(out_scale=0.05, out_zp=0, x_shape=(1, 4)):
    w = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    return ([_q("x", x_shape, 0.1, 0), _q("w", (3, 4), 0.02, 0, data=w),
             dict(name="b", shape=[3], dtype="int32", scale=[0.002], zero_point=[0], data=np.zeros(3, np.int32)),
             _q("y", (1, 3), out_scale, out_zp)],
            [dict(op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3],
                  options=("FullyConnectedOptions", {"FusedActivationFunction": 0}))], [0], [3])


def _softmax(beta):
    return ([_q("x", (1, 8), 0.1, 0), _q("y", (1, 8), 1 / 256, -128)],
            [dict(op="SOFTMAX", inputs=[0], outputs=[1], options=("SoftmaxOptions", {"Beta": beta}))], [0], [1])


def _conv(stride=1, dilation=1):
    w = np.ones((1, 3, 3, 1), np.int8)
    return ([_q("x", (1, 8, 8, 1), 0.1, 0), _q("w", (1, 3, 3, 1), 0.02, 0, data=w), _q("y", (1, 8, 8, 1), 0.1, 0)],
            [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2],
                  options=("Conv2DOptions", {"Padding": 0, "StrideH": stride, "StrideW": stride,
                                             "DilationHFactor": dilation, "DilationWFactor": dilation}))], [0], [2])


TFLITE_CASES = {
    "output_scale_0": lambda: _fc(out_scale=0.0), "zero_point_1000": lambda: _fc(out_zp=1000),
    "zero_dimension": lambda: _fc(x_shape=(1, 0)), "softmax_beta_nan": lambda: _softmax(float("nan")),
    "softmax_beta_negative": lambda: _softmax(-1.0), "dilation_2_30": lambda: _conv(dilation=1 << 30),
    "stride_2_31_minus_1": lambda: _conv(stride=(1 << 31) - 1),
}


@pytest.mark.parametrize("case", sorted(TFLITE_CASES))
def test_hostile_tflite_values_are_one_error(tmp_path, tflite_builder, case):
    (tmp_path / "m.tflite").write_bytes(tflite_builder(*TFLITE_CASES[case]()))
    one_error(cli("compile", tmp_path / "m.tflite", "-t", "host", "-o", tmp_path / "b"))
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- item 11: external data
@pytest.fixture(scope="module")
def external_model(tmp_path_factory) -> Path:
    from onnx.external_data_helper import convert_model_to_external_data
    d = tmp_path_factory.mktemp("ext")
    m = onnx.load_from_string(H.gemm())
    convert_model_to_external_data(m, all_tensors_to_one_file=True, location="net.data", size_threshold=0)
    onnx.save(m, str(d / "net.onnx"))
    assert (d / "net.data").is_file()
    np.save(d / "c.npy", np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32))
    return d / "net.onnx"


@pytest.mark.toolchain
def test_calibrating_a_model_with_external_data(external_model, tmp_path):
    r = edgecomp("compile", external_model, "-t", "host", "--calib", external_model.parent / "c.npy",
                 "-o", tmp_path / "b")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_pi_bundle_of_an_external_data_model_is_self_contained(external_model, tmp_path, precision):
    import onnxruntime as ort
    from edgecomp.integrity import verify_bundle
    r = edgecomp("compile", external_model, "-t", "rpi4", "--precision", precision, "--calib",
                 external_model.parent / "c.npy", "-o", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    man = verify_bundle(tmp_path / "b")
    assert sorted(man["files"]) == ["README.md", "model.onnx", "probe.py", "requirements.txt", "run.py"]
    alone = tmp_path / "alone"  # the model away from any .data file still loads and runs
    alone.mkdir()
    (alone / "model.onnx").write_bytes((tmp_path / "b" / "model.onnx").read_bytes())
    sess = ort.InferenceSession(str(alone / "model.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.ones((1, 8), np.float32)})[0]
    assert y.shape == (1, 3) and np.all(np.isfinite(y))


def test_pi_bundle_does_not_follow_external_data_outside_the_model_folder(tmp_path):
    """The Pi path loaded external data with onnx.load (no confinement); now the frontend's rules apply."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(24, dtype=np.float32).tobytes())
    d = tmp_path / "model"
    d.mkdir()
    m = onnx.load_from_string(H.gemm())
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "96")):
        e = t.external_data.add()
        e.key, e.value = k, v
    (d / "net.onnx").write_bytes(m.SerializeToString())
    msg = one_error(edgecomp("compile", d / "net.onnx", "-t", "rpi4", "--precision", "float32", "-o", tmp_path / "b"))
    assert "outside the model's folder" in msg
    from edgecomp.backends.rpi import write_rpi_bundle  # the backend itself, as the Python API calls it
    from edgecomp.errors import ModelError
    with pytest.raises(ModelError, match="outside the model's folder"):
        write_rpi_bundle(d / "net.onnx", "rpi4", tmp_path / "b", precision="float32")
    assert not (tmp_path / "b").exists()


def test_calibration_child_dies_with_a_killed_edgecomp(tmp_path):
    """The parent holds the time limits: SIGKILL on edgecomp must not leave ORT looping for ever."""
    import signal
    (tmp_path / "m.onnx").write_bytes(H.loop())
    np.save(tmp_path / "c.npy", np.zeros((2, 4), np.float32))
    p = subprocess.Popen([sys.executable, "-m", "edgecomp.cli", "compile", str(tmp_path / "m.onnx"), "-t", "rpi4",
                          "--calib", str(tmp_path / "c.npy"), "-o", str(tmp_path / "b")],
                         env={**os.environ, "PYTHONPATH": str(ROOT), "EDGECOMP_CALIB_STALL": "600"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline:
        time.sleep(0.2)
        children = [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
    assert children, "the calibration child never started"
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            if "State:\tZ" in Path(f"/proc/{children[0]}/status").read_text():
                break
        except OSError:
            break
    alive = Path(f"/proc/{children[0]}/status").exists() and "State:\tZ" not in Path(
        f"/proc/{children[0]}/status").read_text()
    assert not alive, "the calibration child outlived a killed edgecomp"
