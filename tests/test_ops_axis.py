"""Softmax, ArgMax and L2 normalization on every axis: ONNX against ONNX Runtime (float32 within
1e-5, int8 QDQ within 1 LSB, argmax indices equal), TFLite ARG_MAX and L2_NORMALIZATION bit-exact
with TFLite Micro, 2-D to 4-D, batch 1 and 2; the host C build equal to the interpreter."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper as h

from conftest import build_tflite
from edgecomp import api, interp
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize
from onnx_graphs import const, float_model, import_run, lsb_diff, ort_run, qdq, qdq_model, save, to_onnx_layout
from c_harness import run_c
from op_check import q as tq, random_inputs, tflm

SHAPES = {2: (9,), 3: (4, 6), 4: (3, 4, 5)}
CASES = [(r, b, ax) for r in (2, 3, 4) for b in (1, 2) for ax in range(1, r)]


def _softmax(axis, opset=17):
    return lambda x: ([h.make_node("Softmax", [x], ["s"], axis=axis)], "s", [])


@pytest.mark.parametrize("rank,batch,axis", CASES)
def test_softmax_float_every_axis_matches_onnxruntime(tmp_path, rank, batch, axis):
    shape = (batch,) + SHAPES[rank]
    p = save(float_model(shape, _softmax(axis)), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=axis)[0] * 3
    g, _, got = import_run(p, x)
    want = ort_run(p, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rank,batch,axis", CASES)
def test_softmax_int8_every_axis_within_one_lsb_of_onnxruntime(tmp_path, rank, batch, axis):
    """The int8 island (output scale 1/256, zero point -128: TFLM's int8 softmax) on any axis."""
    shape = (batch,) + SHAPES[rank]
    p = save(qdq_model(shape, _softmax(axis), (0.06, 4), (1 / 256, -128)), tmp_path / "q.onnx")
    worst = 0
    for seed in range(10):
        x = random_inputs(shape, "float32", 1, seed=seed)[0] * 2
        g, _, got = import_run(p, x)
        worst = max(worst, lsb_diff(got, ort_run(p, x), g))
    assert worst <= 1
    assert [n.op for n in g.nodes] == ["softmax"]


def test_softmax_before_opset_13_normalizes_the_flattened_rows(tmp_path):
    """Opset 11: axis=1 of [2, 3, 4] means one softmax over the 12 values of each batch row."""
    shape = (2, 3, 4)
    p = save(float_model(shape, _softmax(1), opset=11), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=0)[0]
    _, _, got = import_run(p, x)
    want = ort_run(p, x)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want.reshape(2, -1).sum(axis=1), 1, rtol=1e-5)


@pytest.mark.toolchain
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_softmax_strided_axis_host_c_equals_interpreter(tmp_path, dtype):
    """Axis 2 of [2, 3, 4, 5] (H of an NHWC tensor): the strided kernel, each row through the
    workspace, output over the input or apart."""
    shape = (2, 3, 4, 5)
    m = qdq_model(shape, _softmax(2), (0.06, 4), (1 / 256, -128)) if dtype == "int8" else \
        float_model(shape, _softmax(2))
    g, xin, want = import_run(save(m, tmp_path / "m.onnx"), random_inputs(shape, "float32", 1, seed=3)[0] * 2)
    (tmp_path / "c").mkdir()
    got = run_c(g, xin, tmp_path / "c")
    c = (tmp_path / "c" / "model.c").read_text()
    assert "ec_softmax_axis_" in c and "workspace" in c
    if dtype == "int8":
        np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))
    else:
        np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-5, atol=1e-6)


# -- ArgMax ---------------------------------------------------------------------------------------

def _argmax(axis, keep):
    return lambda x: ([h.make_node("ArgMax", [x], ["a"], axis=axis, keepdims=keep)], "a", [])


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("keep", [1, 0])
def test_argmax_every_axis_equals_onnxruntime(tmp_path, rank, batch, axis, keep):
    """Float and int8 (a dequantized input: the indices of the integers), ties included."""
    shape = (batch,) + SHAPES[rank]
    pf = save(float_model(shape, _argmax(axis, keep), out_type=7), tmp_path / "m.onnx")
    pq = save(qdq_model(shape, _argmax(axis, keep), (0.25, 0), None), tmp_path / "q.onnx")
    for seed in range(5):
        x = np.round(random_inputs(shape, "float32", 1, seed=seed)[0] * 4) / 4  # ties in the int8 values
        for p in (pf, pq):
            g, _, got = import_run(p, x)
            want = ort_run(p, x)
            np.testing.assert_array_equal(to_onnx_layout(got, want.shape), want)
    ops = [n.op for n in g.nodes]  # (a 3-D result of an NHWC tensor is transposed to ONNX order)
    assert ops[0] == "argmax" and set(ops) <= {"argmax", "transpose"} and g.tensors[g.inputs[0]].dtype == "int8"


def _argmax_tflite(rank, batch, axis, dtype):
    shape = (batch,) + SHAPES[rank]
    oshape = [d for i, d in enumerate(shape) if i != axis]
    x = tq("x", shape, 0.1, -3) if dtype == "int8" else dict(name="x", shape=list(shape), dtype="float32")
    t = [x, dict(name="a", shape=[1], dtype="int32", data=np.array([axis], np.int32)),
         dict(name="y", shape=oshape, dtype="int32")]
    return build_tflite(t, [dict(op="ARG_MAX", inputs=[0, 1], outputs=[2], options=("ArgMaxOptions", {"OutputType": 2}))],
                        [0], [2])


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_tflite_arg_max_equals_tflm(rank, batch, axis, dtype):
    m = _argmax_tflite(rank, batch, axis, dtype)
    g = load_tflite(m)
    x = random_inputs((batch,) + SHAPES[rank], dtype, 100, seed=axis)
    if dtype == "int8":
        x = (x // 32).astype(np.int8)  # few values: many ties
    want = tflm(m, [x])
    got = np.stack([interp.run(g, s)[g.outputs[0]] for s in x])
    np.testing.assert_array_equal(got.reshape(want.shape), want)


@pytest.mark.toolchain
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_argmax_host_c_equals_interpreter(tmp_path, dtype):
    """int32 indices as the model's output (the C API's ec_out_t is int32_t)."""
    m = _argmax_tflite(4, 2, 2, dtype)
    g = load_tflite(m)
    x = random_inputs((2,) + SHAPES[4], dtype, 1, seed=1)[0]
    if dtype == "int8":
        x = (x // 32).astype(np.int8)
    got = run_c(g, x, tmp_path)
    np.testing.assert_array_equal(got.reshape(-1), interp.run(g, x)[g.outputs[0]].reshape(-1))
    assert got.dtype == np.int32


@pytest.mark.toolchain
def test_argmax_classifier_compiles_and_runs_on_the_host(tmp_path):
    """A QDQ classifier ending in ArgMax: int8 in, int32 out through compile_model and run_bundle."""
    rng = np.random.default_rng(0)

    def body(x):
        inits = [const("w_q", rng.integers(-127, 128, (10, 9)), np.int8), const("w_s", 0.01), const("w_z", 0, np.int8)]
        n2, i2, gd = qdq("g", 0.05, 3, "gq")
        nodes = [h.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"]),
                 h.make_node("Gemm", [x, "w"], ["g"], transB=1)] + n2 + \
            [h.make_node("ArgMax", [gd], ["a"], axis=1, keepdims=0)]
        return nodes, "a", inits + i2
    p = save(qdq_model((1, 9), body, (0.03, 0), None), tmp_path / "q.onnx")
    man = api.compile_model(p, "host", tmp_path / "b")
    assert man["outputs"][0]["dtype"] == "int32" and [lay["op"] for lay in man["layers"]] == ["fully_connected",
                                                                                             "argmax"]
    x = random_inputs((9,), "float32", 20, seed=2)
    got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False)
    want = np.concatenate([ort_run(p, s[None]) for s in x])
    np.testing.assert_array_equal(got.outputs.reshape(-1), want.reshape(-1))
    np.testing.assert_array_equal(got.outputs_float.reshape(-1), want.reshape(-1))


# -- L2_NORMALIZATION ---------------------------------------------------------------------------

def _l2_tflite(rank, batch, dtype, in_q=(0.05, 3)):
    shape = (batch,) + SHAPES[rank]
    if dtype == "int8":
        t = [tq("x", shape, *in_q), tq("y", shape, 1 / 128, 0)]
    else:
        t = [dict(name="x", shape=list(shape), dtype="float32"), dict(name="y", shape=list(shape), dtype="float32")]
    return build_tflite(t, [dict(op="L2_NORMALIZATION", inputs=[0], outputs=[1],
                                 options=("L2NormOptions", {"FusedActivationFunction": 0}))], [0], [1])


@pytest.mark.parametrize("rank,batch", [(r, b) for r in (2, 3, 4) for b in (1, 2)])
@pytest.mark.parametrize("in_q", [(0.05, 3), (0.002, -128), (1.0, 0)])
def test_tflite_l2_normalization_int8_bit_exact_with_tflm(rank, batch, in_q):
    m = _l2_tflite(rank, batch, "int8", in_q)
    g = requantize(load_tflite(m))
    x = random_inputs((batch,) + SHAPES[rank], "int8", 100, seed=rank)
    x[0] = in_q[1]  # an all-zero row (the kernel's x <= 1 case)
    x[1] = np.clip(in_q[1] + 1, -128, 127)
    want = tflm(m, [x])
    got = np.stack([interp.run(g, s)[g.outputs[0]] for s in x])
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert len(np.unique(want)) > 50


@pytest.mark.parametrize("rank", [2, 4])
def test_tflite_l2_normalization_float_matches_tflm(rank):
    m = _l2_tflite(rank, 2, "float32")
    g = load_tflite(m)
    x = random_inputs((2,) + SHAPES[rank], "float32", 10, seed=rank)
    want = tflm(m, [x])
    got = np.stack([interp.run(g, s)[g.outputs[0]] for s in x])
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)


@pytest.mark.toolchain
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_l2_normalization_host_c_equals_interpreter(tmp_path, dtype):
    m = _l2_tflite(3, 2, dtype, (0.002, -128))
    g = requantize(load_tflite(m))
    x = random_inputs((2,) + SHAPES[3], dtype, 1, seed=7)[0]
    got = run_c(g, x, tmp_path)
    want = interp.run(g, x)[g.outputs[0]]
    if dtype == "int8":
        np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))
    else:
        np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-5, atol=1e-6)


def test_l2_normalization_output_not_at_1_over_128_is_refused():
    from edgecomp.errors import UnsupportedError
    t = [tq("x", (1, 8), 0.05, 3), tq("y", (1, 8), 0.01, 0)]
    m = build_tflite(t, [dict(op="L2_NORMALIZATION", inputs=[0], outputs=[1])], [0], [1])
    with pytest.raises(UnsupportedError, match="1/128"):
        requantize(load_tflite(m))
