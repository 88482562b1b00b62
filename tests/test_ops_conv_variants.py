"""Convolution variants: TFLite TRANSPOSE_CONV and grouped CONV_2D bit-exact with TFLite Micro;
ONNX ConvTranspose (strides, pads, output_padding, output_shape, dilations), grouped Conv
(1 < group < channels) and a BatchNormalization that follows no convolution (a per-channel affine)
against ONNX Runtime (float32 within 1e-5, int8 QDQ within 1 LSB), batch 1 and 2; their MACs;
the host C build equal to the interpreter; a cortex-m4 sample under QEMU."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper as h

from conftest import build_tflite
from edgecomp import api, interp, ir
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize
from onnx_graphs import const, float_model, import_run, lsb_diff, ort_run, qdq, qdq_model, save, to_onnx_layout
from c_harness import run_c
from op_check import q as tq, random_inputs, tflm

RNG = np.random.default_rng(7)


# -- TFLite -----------------------------------------------------------------------------------------

def _weights(shape, dtype, axis=0):
    w = RNG.integers(-127, 128, shape).astype(np.int8)
    if dtype == "int8":
        n = shape[axis]
        return dict(name="w", shape=list(shape), dtype="int8", data=w, scale=list(RNG.uniform(0.002, 0.01, n)),
                    zero_point=[0] * n, axis=axis)
    return dict(name="w", shape=list(shape), dtype="float32", data=(w * 0.01).astype(np.float32))


def _bias(n, dtype):
    if dtype == "int8":
        return dict(name="b", shape=[n], dtype="int32", data=RNG.integers(-3000, 3000, n).astype(np.int32))
    return dict(name="b", shape=[n], dtype="float32", data=RNG.standard_normal(n).astype(np.float32))


def _act_t(name, shape, dtype, q):
    return tq(name, shape, *q) if dtype == "int8" else dict(name=name, shape=list(shape), dtype="float32")


#: (input shape, output shape, kernel, stride, padding (0 SAME, 1 VALID), fused activation, bias)
TCONVS = [((1, 4, 5, 3), (1, 8, 10, 6), (3, 3), (2, 2), 0, 0, True),
          ((1, 4, 5, 3), (1, 9, 11, 6), (3, 3), (2, 2), 1, 0, True),
          ((1, 4, 5, 3), (1, 8, 10, 4), (2, 2), (2, 2), 0, 1, False),
          ((2, 3, 3, 2), (2, 6, 6, 5), (4, 4), (2, 2), 0, 3, True),
          ((1, 5, 4, 3), (1, 5, 4, 6), (3, 3), (1, 1), 0, 0, True)]


def tconv_tflite(case, dtype):
    xs, ys, k, s, padding, act, bias = case
    t = [dict(name="shape", shape=[4], dtype="int32", data=np.array(ys, np.int32)),
         _weights((ys[3], k[0], k[1], xs[3]), dtype), _act_t("x", xs, dtype, (0.05, 3)),
         _act_t("y", ys, dtype, (0.2, -7))] + ([_bias(ys[3], dtype)] if bias else [])
    opts = ("TransposeConvOptions", {"Padding": padding, "StrideH": s[0], "StrideW": s[1],
                                     "FusedActivationFunction": act})
    return build_tflite(t, [dict(op="TRANSPOSE_CONV", inputs=[0, 1, 2] + ([4] if bias else []), outputs=[3],
                                 options=opts)], [2], [3])


#: (input shape, groups, output channels, kernel, stride, padding)
GROUPED = [((1, 6, 7, 6), 2, 4, (3, 3), (1, 1), 0), ((2, 5, 6, 6), 3, 6, (3, 3), (2, 2), 0),
           ((1, 6, 6, 8), 4, 8, (1, 1), (1, 1), 1), ((1, 7, 5, 4), 2, 6, (3, 2), (2, 1), 1)]


def grouped_tflite(case, dtype):
    xs, groups, oc, k, s, padding = case
    oh = -(-xs[1] // s[0]) if padding == 0 else (xs[1] - k[0]) // s[0] + 1
    ow = -(-xs[2] // s[1]) if padding == 0 else (xs[2] - k[1]) // s[1] + 1
    ys = (xs[0], oh, ow, oc)
    t = [_act_t("x", xs, dtype, (0.05, 3)), _weights((oc, k[0], k[1], xs[3] // groups), dtype),
         _bias(oc, dtype), _act_t("y", ys, dtype, (0.1, -4))]
    opts = ("Conv2DOptions", {"Padding": padding, "StrideH": s[0], "StrideW": s[1], "FusedActivationFunction": 0,
                              "DilationHFactor": 1, "DilationWFactor": 1})
    return build_tflite(t, [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3], options=opts)], [0], [3])


def _vs_tflm(m, xs, dtype, n):
    g = requantize(load_tflite(m))
    x = random_inputs(xs, dtype, n, seed=3)
    want = tflm(m, [x])
    got = np.stack([interp.run(g, s)[g.outputs[0]] for s in x])
    if dtype == "int8":
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        assert len(np.unique(want)) > 20
    else:
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    return g


@pytest.mark.parametrize("case", TCONVS, ids=lambda c: f"{c[0][1]}x{c[0][2]}to{c[1][1]}x{c[1][2]}k{c[2][0]}s{c[3][0]}p{c[4]}a{c[5]}")
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_tflite_transpose_conv_equals_tflm(case, dtype):
    g = _vs_tflm(tconv_tflite(case, dtype), case[0], dtype, 100 if dtype == "int8" else 5)
    xs, ys, k = case[0], case[1], case[2]
    assert ir.macs(g, g.nodes[0]) == int(np.prod(xs)) * ys[3] * k[0] * k[1]


@pytest.mark.parametrize("case", GROUPED, ids=lambda c: f"g{c[1]}k{c[3][0]}{c[3][1]}s{c[4][0]}{c[4][1]}b{c[0][0]}")
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_tflite_grouped_conv_equals_tflm(case, dtype):
    g = _vs_tflm(grouped_tflite(case, dtype), case[0], dtype, 100 if dtype == "int8" else 5)
    n = g.nodes[0]
    assert n.attrs["groups"] == case[1]
    out = g.tensors[n.outputs[0]]
    assert ir.macs(g, n) == out.size * case[3][0] * case[3][1] * case[0][3] // case[1]


# -- ONNX ---------------------------------------------------------------------------------------------

def _qweights(name, w, axis, qdq_w):
    """(nodes, initializers, the weight's name): float, or int8 per channel along ``axis`` + DequantizeLinear."""
    if not qdq_w:
        return [], [const(name, w)], name
    red = tuple(i for i in range(w.ndim) if i != axis)
    s = np.maximum(np.abs(w).max(axis=red), 1e-6) / 127
    shp = [1] * w.ndim
    shp[axis] = -1
    q = np.clip(np.rint(w / s.reshape(shp)), -127, 127)
    return ([h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=axis)],
            [const(f"{name}_q", q, np.int8), const(f"{name}_s", s), const(f"{name}_z", np.zeros_like(s), np.int8)], name)


def _qbias(name, b, in_scale, w_scales, qdq_b):
    if not qdq_b:
        return [], [const(name, b)], name
    s = (in_scale * w_scales).astype(np.float32)
    q = np.rint(b / s)
    return ([h.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=0)],
            [const(f"{name}_q", q, np.int32), const(f"{name}_s", s), const(f"{name}_z", np.zeros_like(s), np.int32)],
            name)


def _layer(op, w_shape, axis, attrs, quantized, in_scale=0.04):
    w = RNG.standard_normal(w_shape).astype(np.float32) * 0.3
    oc = w_shape[axis]
    b = RNG.standard_normal(oc).astype(np.float32) * 0.2

    def body(x):
        nw, iw, wn = _qweights("w", w, axis, quantized)
        ws = np.maximum(np.abs(w).max(axis=tuple(i for i in range(4) if i != axis)), 1e-6) / 127
        nb, ib, bn = _qbias("b", b, in_scale, ws, quantized)
        return nw + nb + [h.make_node(op, [x, wn, bn], ["y"], **attrs)], "y", iw + ib
    return body


#: ConvTranspose (input C, H, W, output channels, kernel, attributes)
CONVT = [(3, 4, 5, 6, (3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),  # x2 upsampling
         (4, 3, 3, 5, (2, 2), dict(strides=[2, 2])),
         (3, 4, 4, 4, (3, 3), dict(strides=[1, 1], pads=[1, 0, 1, 2], dilations=[2, 1])),
         (2, 3, 5, 3, (3, 3), dict(strides=[2, 3], output_shape=[7, 14])),
         (2, 3, 4, 3, (3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
         (2, 3, 4, 3, (4, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER"))]


@pytest.mark.parametrize("case", CONVT, ids=lambda c: "-".join(f"{k}{v}" for k, v in c[5].items()).replace(" ", ""))
@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_conv_transpose_matches_onnxruntime(tmp_path, case, batch):
    ci, hh, ww, co, k, attrs = case
    shape = (batch, ci, hh, ww)
    attrs = dict(attrs, kernel_shape=list(k))
    pf = save(float_model(shape, _layer("ConvTranspose", (ci, co) + k, 1, attrs, False)), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=1)[0]
    g, _, got = import_run(pf, x)
    want = ort_run(pf, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-5)
    assert [n.op for n in g.nodes] == ["transpose_conv2d"]
    pq = save(qdq_model(shape, _layer("ConvTranspose", (ci, co) + k, 1, attrs, True), (0.04, 2), (0.05, -3)),
              tmp_path / "q.onnx")
    worst = 0
    for seed in range(10):
        x = random_inputs(shape, "float32", 1, seed=seed)[0]
        g, _, got = import_run(pq, x)
        worst = max(worst, lsb_diff(got, ort_run(pq, x), g))
    assert worst <= 1 and [n.op for n in g.nodes] == ["transpose_conv2d"] and g.tensors[g.inputs[0]].dtype == "int8"


#: grouped Conv (input C, groups, output channels, kernel, attributes)
GCONV = [(8, 2, 6, (3, 3), dict(pads=[1, 1, 1, 1])), (8, 4, 8, (3, 3), dict(strides=[2, 2], pads=[0, 1, 1, 0])),
         (6, 3, 9, (1, 1), {}), (4, 2, 4, (3, 3), dict(dilations=[2, 2], pads=[2, 2, 2, 2]))]


@pytest.mark.parametrize("case", GCONV, ids=lambda c: f"c{c[0]}g{c[1]}o{c[2]}k{c[3][0]}")
@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_grouped_conv_matches_onnxruntime(tmp_path, case, batch):
    ci, groups, co, k, attrs = case
    shape = (batch, ci, 7, 6)
    attrs = dict(attrs, kernel_shape=list(k), group=groups)
    w_shape = (co, ci // groups) + k
    pf = save(float_model(shape, _layer("Conv", w_shape, 0, attrs, False)), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=2)[0]
    g, _, got = import_run(pf, x)
    want = ort_run(pf, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-5)
    assert [(n.op, n.attrs.get("groups")) for n in g.nodes] == [("conv2d", groups)]
    pq = save(qdq_model(shape, _layer("Conv", w_shape, 0, attrs, True), (0.04, 2), (0.05, -3)), tmp_path / "q.onnx")
    worst = 0
    for seed in range(10):
        x = random_inputs(shape, "float32", 1, seed=seed)[0]
        g, _, got = import_run(pq, x)
        worst = max(worst, lsb_diff(got, ort_run(pq, x), g))
    assert worst <= 1


def _bn(c):
    def body(x):
        inits = [const("s", RNG.uniform(-2, 2, c)), const("bb", RNG.uniform(-1, 1, c)),
                 const("m", RNG.uniform(-1, 1, c)), const("v", RNG.uniform(0.3, 2, c))]
        return [h.make_node("BatchNormalization", [x, "s", "bb", "m", "v"], ["y"], epsilon=1e-3)], "y", inits
    return body


@pytest.mark.parametrize("shape", [(1, 5), (2, 5), (1, 5, 6), (2, 5, 6), (1, 5, 4, 3), (2, 5, 4, 3)])
def test_batch_norm_without_a_convolution_matches_onnxruntime(tmp_path, shape):
    """A per-channel affine (a 1x1 depthwise convolution): float, and an int8 island with its own
    output scale (ORT's QDQ BatchNormalization)."""
    pf = save(float_model(shape, _bn(shape[1])), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=4)[0]
    g, _, got = import_run(pf, x)
    want = ort_run(pf, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-5)
    assert "depthwise_conv2d" in [n.op for n in g.nodes]
    pq = save(qdq_model(shape, _bn(shape[1]), (0.03, -6), (0.021, 9)), tmp_path / "q.onnx")
    worst = 0
    for seed in range(10):
        x = random_inputs(shape, "float32", 1, seed=seed)[0]
        g, _, got = import_run(pq, x)
        worst = max(worst, lsb_diff(got, ort_run(pq, x), g))
    assert worst <= 1 and "dequantize" not in [n.op for n in g.nodes]


# -- C -------------------------------------------------------------------------------------------------

@pytest.mark.toolchain
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_transpose_and_grouped_conv_host_c_equal_interpreter(tmp_path, dtype):
    for i, m in enumerate([tconv_tflite(TCONVS[0], dtype), tconv_tflite(TCONVS[3], dtype),
                           grouped_tflite(GROUPED[1], dtype)]):
        g = requantize(load_tflite(m))
        x = random_inputs(g.tensors[g.inputs[0]].shape, dtype, 1, seed=i)[0]
        (tmp_path / str(i)).mkdir()
        got = run_c(g, x, tmp_path / str(i), dsp=True)
        want = interp.run(g, x)[g.outputs[0]]
        if dtype == "int8":
            np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))
        else:
            np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.toolchain
def test_grouped_conv_with_a_fused_residual_add_host_c(tmp_path):
    """A grouped block (RegNet's): grouped 3x3 conv + the block input added back, fused into the conv."""
    shape = (1, 8, 6, 5)

    def body(x):
        nodes, y, inits = _layer("Conv", (8, 4, 3, 3), 0, dict(kernel_shape=[3, 3], group=2, pads=[1, 1, 1, 1]),
                                 True)(x)
        n2, i2, yd = qdq(y, 0.05, -3, "yq")
        return nodes + n2 + [h.make_node("Add", [yd, x], ["s"])], "s", inits + i2
    p = save(qdq_model(shape, body, (0.04, 2), (0.06, 1)), tmp_path / "q.onnx")
    g, xin, want = import_run(p, random_inputs(shape, "float32", 1, seed=3)[0])
    (tmp_path / "c").mkdir()
    got = run_c(g, xin, tmp_path / "c", dsp=True)
    np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))
    c = (tmp_path / "c" / "model.c").read_text()
    assert "ec_conv2d_grouped_s8(" in c and "+ residual add of" in c and "ec_add_s8(" not in c


@pytest.mark.toolchain
def test_batch_norm_affine_host_c_equals_interpreter(tmp_path):
    shape = (2, 5, 6)
    p = save(qdq_model(shape, _bn(5), (0.03, -6), (0.021, 9)), tmp_path / "q.onnx")
    g, xin, want = import_run(p, random_inputs(shape, "float32", 1, seed=8)[0])
    (tmp_path / "c").mkdir()
    got = run_c(g, xin, tmp_path / "c", dsp=True)
    np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))


@pytest.mark.qemu
@pytest.mark.toolchain
def test_decoder_block_on_cortex_m4_equals_tflm(tmp_path):
    """A grouped convolution then a 2x transpose convolution (an encoder-decoder's upsampling) on
    cortex-m4 under QEMU, bit-exact with TFLM; their MACs in the manifest."""
    xs, ys = (1, 6, 6, 4), (1, 12, 12, 3)
    t = [tq("x", xs, 0.05, 3), _weights((4, 3, 3, 2), "int8"), _bias(4, "int8"), tq("g", xs, 0.08, -2),
         dict(name="shape", shape=[4], dtype="int32", data=np.array(ys, np.int32)),
         dict(_weights((3, 3, 3, 4), "int8"), name="w2"), tq("y", ys, 0.1, 5)]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=("Conv2DOptions", {"Padding": 0, "StrideH": 1, "StrideW": 1, "FusedActivationFunction": 1,
                                           "DilationHFactor": 1, "DilationWFactor": 1})),
           dict(op="TRANSPOSE_CONV", inputs=[4, 5, 3], outputs=[6],
                options=("TransposeConvOptions", {"Padding": 0, "StrideH": 2, "StrideW": 2,
                                                  "FusedActivationFunction": 0}))]
    m = build_tflite(t, ops, [0], [6])
    (tmp_path / "m.tflite").write_bytes(m)
    man = api.compile_model(tmp_path / "m.tflite", "cortex-m4", tmp_path / "b")
    assert [lay["macs"] for lay in man["layers"]] == [6 * 6 * 4 * 9 * 2, 6 * 6 * 4 * 3 * 9]
    x = random_inputs(xs[1:], "int8", 3, seed=6)
    got = api.run_bundle(tmp_path / "b", x, emulate=True, progress=False).outputs
    np.testing.assert_array_equal(got.reshape(3, -1), tflm(m, [x[:, None]]).reshape(3, -1))
