"""LSTM and GRU: TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM bit-exact with TensorFlow Lite Micro, ONNX
LSTM / GRU against ONNX Runtime (float, and the integer scheme against ORT running the QDQ graph),
the host C build equal to the interpreter, streaming frame by frame equal to the whole sequence,
and a cortex-m4 sample under QEMU."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp import api, interp
from edgecomp.errors import UnsupportedError
from edgecomp.frontends.onnx import from_onnx
from edgecomp.frontends.tflite import load_tflite
from edgecomp.numerics import affine_quantize
from edgecomp.options import CodegenOptions
from edgecomp.reference import litert_run, tflm_run
from rnn_models import tflite_lstm, write
from c_harness import build, run_c

HAS_GCC = shutil.which("gcc") is not None
HAS_ARM = bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))


def _int8_seqs(n, shape, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n,) + shape, dtype=np.int8)


# ------------------------------------------------------------------------------------- TFLite / TFLM
TFLM_CASES = [dict(T=8, I=5, H=6, cell_log2=-11), dict(T=6, I=3, H=9, cell_log2=-15, cell_clip=3.0, seed=3),
              dict(T=5, I=7, H=4, cell_log2=-10, cell_clip=0.5, seed=5)]


@pytest.mark.parametrize("case", TFLM_CASES, ids=["q4.11", "q0.15-clip", "q5.10-clip"])
def test_tflite_int8_lstm_bit_exact_with_tflm(tmp_path, case):
    """100 random sequences, 0 LSB: TFLM's integer LSTM (int16 gates and cell, its sigmoid/tanh)."""
    p = write(tmp_path / "lstm.tflite", tflite_lstm(**case))
    g = load_tflite(p)
    assert [n.op for n in g.nodes] == ["lstm"]
    x = _int8_seqs(100, (1, case["T"], case["I"]), seed=case.get("seed", 0))
    want = tflm_run(p, x)
    got = interp.run(g, x)[g.outputs[0]]
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert len(np.unique(want)) > 20  # the gates are not saturated: the arithmetic is exercised


def test_tflite_float_lstm_matches_litert(tmp_path):
    p = write(tmp_path / "lstm_f.tflite", tflite_lstm(dtype="float32", cell_clip=2.0))
    g = load_tflite(p)
    x = np.random.default_rng(1).normal(0, 1.5, (20, 1, 8, 5)).astype(np.float32)
    want = litert_run(p, x)
    np.testing.assert_allclose(interp.run(g, x)[g.outputs[0]].reshape(want.shape), want, atol=1e-5)


def test_tflite_lstm_variants_refused_clearly(tmp_path):
    data = bytearray(tflite_lstm(time_major=True))
    p = write(tmp_path / "tm.tflite", bytes(data))
    g = load_tflite(p)  # batch 1: time major and batch major hold the same bytes ...
    assert g.nodes[0].op == "lstm"
    with pytest.raises(UnsupportedError, match="streaming build of a model without recurrent layers"):
        from edgecomp.frontends.tflite import load_tflite as lt  # noqa: F401
        from edgecomp.passes.streaming import stream_frames
        from edgecomp import ir
        g2 = ir.Graph("x", {"a": ir.Tensor("a", (1, 4), "float32"), "b": ir.Tensor("b", (1, 4), "float32")},
                      [ir.Node("c", "clamp", ["a"], ["b"], {"act": (0.0, 1.0)})], ["a"], ["b"])
        stream_frames(g2, CodegenOptions(streaming=True))


@pytest.mark.toolchain
@pytest.mark.skipif(not HAS_GCC, reason="needs gcc")
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_tflite_lstm_host_c_equals_interpreter_and_streams(tmp_path, dtype):
    p = write(tmp_path / "lstm.tflite", tflite_lstm(dtype=dtype, T=8, I=5, H=6, cell_clip=1.5, cell_log2=-14))
    g = load_tflite(p)
    rng = np.random.default_rng(2)
    x = _int8_seqs(60, (8, 5), 2) if dtype == "int8" else rng.normal(0, 1, (60, 8, 5)).astype(np.float32)
    want = interp.run(g, x)[g.outputs[0]]
    got = run_c(g, x, tmp_path / "whole")
    if dtype == "int8":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, atol=1e-5)
    # streaming: one frame per ec_invoke, the state kept: frame t gives step t of the whole sequence
    from edgecomp.backends.c import generate
    d = tmp_path / "stream"
    info = generate(g, d, options=CodegenOptions(streaming=True))
    assert "#define EC_STREAMING 1" in (d / "model.h").read_text()
    exe = build(d, sources=[f for f in info.files if f.endswith(".c")])
    for s in range(2):  # each run of the harness is one stream (first ec_invoke resets the state)
        r = subprocess.run([str(exe)], input=np.ascontiguousarray(x[s]).tobytes(), capture_output=True, check=True)
        frames = np.frombuffer(r.stdout, dtype=want.dtype).reshape(8, 6)
        if dtype == "int8":
            np.testing.assert_array_equal(frames, want[s])
        else:
            np.testing.assert_allclose(frames, want[s], atol=1e-5)


# ------------------------------------------------------------------------------------- ONNX / ORT
def _onnx_rnn(path, kind: str, T=7, I=4, H=5, *, lbr=0, init="none", seq=True, seed=0, clip=None):
    """One ONNX LSTM / GRU node on a model input [1, T, I] (transposed to time major), by hand."""
    rng = np.random.default_rng(seed)
    G = 4 if kind == "LSTM" else 3
    W = rng.normal(0, 0.5, (1, G * H, I)).astype(np.float32)
    R = rng.normal(0, 0.4, (1, G * H, H)).astype(np.float32)
    B = rng.normal(0, 0.3, (1, 2 * G * H)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"), numpy_helper.from_array(B, "B")]
    ins = ["xt", "W", "R", "B", ""]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, I])]
    if init == "const":
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (1, 1, H)).astype(np.float32), "h0"))
        ins.append("h0")
        if kind == "LSTM":
            inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (1, 1, H)).astype(np.float32), "c0"))
            ins.append("c0")
    attrs = {"hidden_size": H}
    if kind == "GRU":
        attrs["linear_before_reset"] = lbr
    if clip:
        attrs["clip"] = clip
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),  # time major, as ORT runs it
             helper.make_node(kind, ins, ["Y", "Y_h"], name=kind.lower(), **attrs)]
    if seq:  # [T, 1, 1, H] -> [1, T, H] as PyTorch exports it
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax"))
        nodes += [helper.make_node("Squeeze", ["Y", "ax"], ["Ys"]),
                  helper.make_node("Transpose", ["Ys"], ["y"], perm=[1, 0, 2])]
    out = helper.make_tensor_value_info("y" if seq else "Y_h", TensorProto.FLOAT, [1, T, H] if seq else [1, 1, H])
    g = helper.make_graph(nodes, "rnn", graph_inputs, [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(m, str(path))
    return path


ONNX_CASES = [("LSTM", dict()), ("LSTM", dict(init="const", seq=False)),
              ("GRU", dict(lbr=0)), ("GRU", dict(lbr=1, init="const", seq=False))]


@pytest.mark.parametrize("kind,kw", ONNX_CASES, ids=["lstm", "lstm-h0c0-last", "gru-lbr0", "gru-lbr1-h0-last"])
def test_onnx_float_rnn_matches_onnxruntime(tmp_path, kind, kw):
    import onnxruntime as ort

    p = _onnx_rnn(tmp_path / "m.onnx", kind, **kw)
    g = from_onnx(p)
    assert [n.op for n in g.nodes if n.op != "reshape"] == [kind.lower()]
    x = np.random.default_rng(4).normal(0, 1, (10, 1, 7, 4)).astype(np.float32)
    s = ort.InferenceSession(str(p))
    want = np.stack([s.run(None, {"x": xi})[0] for xi in x])
    got = interp.run(g, x)[g.outputs[0]]
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)


def test_onnx_rnn_refusals(tmp_path):
    p = _onnx_rnn(tmp_path / "bi.onnx", "LSTM")
    m = onnx.load(str(p))
    m.graph.node[1].attribute.append(helper.make_attribute("direction", "bidirectional"))
    onnx.save(m, str(p))
    with pytest.raises(UnsupportedError, match="direction"):
        from_onnx(p)
    with pytest.raises(UnsupportedError, match="clip"):
        from_onnx(_onnx_rnn(tmp_path / "clip.onnx", "LSTM", clip=1.0))


@pytest.fixture(scope="module")
def torch_rnns(tmp_path_factory):
    """PyTorch LSTM / GRU (batch_first, last step -> Linear) exported, and int8-quantized with calibration."""
    import torch

    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.frontends.torch import export_onnx

    class Net(torch.nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(6, 12, batch_first=True)
            self.fc = torch.nn.Linear(12, 3)

        def forward(self, x):
            _, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            return self.fc(h.squeeze(0))

    work = tmp_path_factory.mktemp("torch_rnn")
    rng = np.random.default_rng(0)
    cal = rng.normal(0, 1, (64, 10, 6)).astype(np.float32)
    out = {}
    for kind in ("LSTM", "GRU"):
        torch.manual_seed(1)
        f = export_onnx(Net(kind).eval(), torch.zeros(1, 10, 6), work / f"{kind}.onnx")
        q = quantize_onnx(f, cal, work / f"{kind}.int8.onnx", progress=False)
        out[kind] = (f, q)
    return out


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_torch_rnn_int8_within_1lsb_of_qdq_onnxruntime(torch_rnns, kind):
    """The integer layers against ORT running the QDQ graph as written (float LSTM between its
    calibrated QDQ pairs): within 1 LSB; against the float model within the documented error."""
    import onnxruntime as ort

    from edgecomp.compress.quantize import reference_session

    f, q = torch_rnns[kind]
    g = from_onnx(q)
    assert kind.lower() in [n.op for n in g.nodes] and g.tensors[g.inputs[0]].dtype == "int8"
    rnn = next(n for n in g.nodes if n.op == kind.lower())
    assert g.tensors[rnn.outputs[0]].dtype == "int8"
    x = np.random.default_rng(7).normal(0, 1, (100, 10, 6)).astype(np.float32)
    ti, to = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    xq = affine_quantize(x, float(ti.quant.scale[0]), int(ti.quant.zero_point[0]))
    yq = interp.run(g, xq)[g.outputs[0]].astype(np.int32)
    s = reference_session(q)
    ref = np.concatenate([s.run(None, {"input": xi[None]})[0] for xi in x])
    ref_q = np.round(ref / to.quant.scale[0]).astype(np.int32) + int(to.quant.zero_point[0])
    assert np.abs(yq - ref_q).max() <= 1
    fl = ort.InferenceSession(str(f))
    fref = np.concatenate([fl.run(None, {"input": xi[None]})[0] for xi in x])
    y = (yq - int(to.quant.zero_point[0])) * float(to.quant.scale[0])
    # docs/internals.md: the integer layers cost at most 2 LSB beyond what the int8 QDQ graph itself
    # loses against the float model
    lsb = float(to.quant.scale[0])
    assert np.abs(y - fref).max() <= np.abs(ref - fref).max() + 2 * lsb
    assert (y.argmax(1) == fref.argmax(1)).mean() >= 0.9


@pytest.mark.toolchain
@pytest.mark.skipif(not HAS_GCC, reason="needs gcc")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_torch_rnn_int8_host_c_equals_interpreter_and_streams(torch_rnns, tmp_path, kind):
    from edgecomp.backends.c import generate

    g = from_onnx(torch_rnns[kind][1])
    x = np.random.default_rng(8).integers(-128, 128, (30, 10, 6), dtype=np.int8)
    want = interp.run(g, x)[g.outputs[0]]
    np.testing.assert_array_equal(run_c(g, x, tmp_path / "whole"), want)
    d = tmp_path / "stream"
    info = generate(g, d, options=CodegenOptions(streaming=True))
    exe = build(d, sources=[f for f in info.files if f.endswith(".c")])
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(x[0]).tobytes(), capture_output=True, check=True)
    frames = np.frombuffer(r.stdout, dtype=np.int8).reshape(10, -1)
    np.testing.assert_array_equal(frames[-1], want[0])  # the last step read after each frame: frame 9 = whole
    assert len({f.tobytes() for f in frames}) > 5  # the state moves from frame to frame


# ------------------------------------------------------------------------------------- cortex-m4
@pytest.mark.qemu
@pytest.mark.toolchain
@pytest.mark.skipif(not HAS_ARM, reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_tflite_int8_lstm_on_cortex_m4_equals_tflm(tmp_path):
    p = write(tmp_path / "lstm.tflite", tflite_lstm(T=8, I=5, H=6, cell_clip=2.0))
    x = _int8_seqs(4, (1, 8, 5), 9)
    api.compile_model(str(p), "cortex-m4", tmp_path / "m4")
    got = api.run_bundle(tmp_path / "m4", x.reshape(4, 8, 5), progress=False).outputs
    np.testing.assert_array_equal(got.reshape(4, -1), tflm_run(p, x).reshape(4, -1))


def test_stacked_torch_lstm_int8_within_1lsb(tmp_path):
    """nn.LSTM(num_layers=2), every step out: two int8 layers, the first one's output quantized once."""
    import torch

    from edgecomp.compress.quantize import quantize_onnx, reference_session
    from edgecomp.frontends.torch import export_onnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    torch.manual_seed(2)
    f = export_onnx(Net().eval(), torch.zeros(1, 6, 5), tmp_path / "two.onnx")
    x = np.random.default_rng(5).normal(0, 1, (40, 6, 5)).astype(np.float32)
    q = quantize_onnx(f, x[:20], tmp_path / "two.int8.onnx", progress=False)
    g = from_onnx(q)
    rnn = [n for n in g.nodes if n.op == "lstm"]
    assert len(rnn) == 2 and all(g.tensors[n.outputs[0]].dtype == "int8" for n in rnn)
    ti = g.tensors[g.inputs[0]]
    y = interp.run(g, affine_quantize(x, float(ti.quant.scale[0]), int(ti.quant.zero_point[0])))[g.outputs[0]]
    to = g.tensors[g.outputs[0]]
    if to.dtype == "int8":  # (the int8 side ends the graph when the exporter's moves after it sink too)
        y = (y.astype(np.float32) - int(to.quant.zero_point[0])) * np.float32(to.quant.scale[0])
    s = reference_session(q)
    ref = np.concatenate([s.run(None, {"input": xi[None]})[0] for xi in x])
    lsb = float(g.tensors[rnn[1].outputs[0]].quant.scale[0])
    assert np.abs(y.reshape(ref.shape) - ref).max() <= lsb * 1.001
