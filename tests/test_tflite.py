"""TFLite import + the reference interpreter, held against TFLite Micro (int8, bit for bit)
and LiteRT (float32) on the MLPerf Tiny models and on tiny one-op models; clear errors on
bad files."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edgecomp import interp
from edgecomp.errors import EdgecompError, ModelError, UnsupportedError
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize
from edgecomp.reference import litert_run, tflm_arena_bytes, tflm_run

INT8 = {  # file -> (input shape, ops, arena bytes from TFLM's recording allocator)
    "ad01_int8": ((1, 640), {"fully_connected"}, 3984),
    "kws_ref_model": ((1, 49, 10, 1), {"conv2d", "depthwise_conv2d", "avg_pool2d", "reshape",
                                       "fully_connected", "softmax"}, 24272),
    "pretrainedResnet_quant": ((1, 32, 32, 3), {"conv2d", "add", "avg_pool2d", "reshape", "fully_connected",
                                                "softmax"}, 55984),
    "vww_96_int8": ((1, 96, 96, 3), {"conv2d", "depthwise_conv2d", "avg_pool2d", "reshape", "fully_connected",
                                     "softmax"}, 103680),
}
FLOAT = {"ad01_fp32": "ad01_int8", "kws_ref_model_float32": "kws_ref_model",
         "pretrainedResnet": "pretrainedResnet_quant", "vww_96_float": "vww_96_int8"}
MACS = {"ad01_int8": 264_192, "kws_ref_model": 2_656_768, "pretrainedResnet_quant": 12_501_632,
        "vww_96_int8": 7_489_664}


def _rand_int8(shape, n, seed):
    return np.random.default_rng(seed).integers(-128, 128, (n,) + tuple(shape[1:])).astype(np.int8)


# -- the MLPerf Tiny models ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(INT8))
def test_int8_model_imports_with_tflite_structure(mlperf_dir, name):
    from edgecomp import ir
    shape, ops, _ = INT8[name]
    g = load_tflite(mlperf_dir / f"{name}.tflite")
    assert g.meta["source"] == "tflite" and g.meta["input_layout"] == "NHWC"
    assert g.t(g.inputs[0]).shape == shape and g.t(g.inputs[0]).dtype == "int8"
    assert g.t(g.outputs[0]).dtype == "int8"
    assert {n.op for n in g.nodes} == ops
    assert ir.total_macs(g) == MACS[name]
    g.validate()
    requantize(g)
    for n in g.nodes:
        if n.op in ("conv2d", "depthwise_conv2d"):
            w = g.t(n.inputs[1])
            axis = 0 if n.op == "conv2d" else 3
            assert w.quant.axis == axis and w.quant.scale.size == w.shape[axis]  # per-axis weights
            assert g.t(n.inputs[2]).dtype == "int32"
        if n.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
            q = n.attrs["q"]
            n_out = g.t(n.outputs[0]).shape[-1]
            assert q["multiplier"].dtype == np.int32 and q["multiplier"].shape == (n_out,)
            assert np.all((q["multiplier"] >= 1 << 30) | (q["multiplier"] == 0))
            assert q["input_offset"] == -int(g.t(n.inputs[0]).quant.zero_point[0])
            assert q["output_offset"] == int(g.t(n.outputs[0]).quant.zero_point[0])
            lo, hi = n.attrs["act"]
            assert -128 <= lo <= hi <= 127
        if n.op == "softmax":
            assert set(n.attrs["q"]) == {"input_multiplier", "input_left_shift", "diff_min"}
        if n.op == "add":
            assert n.attrs["q"]["left_shift"] == 20


def test_fused_relu_and_same_padding_are_converted(mlperf_dir):
    g = load_tflite(mlperf_dir / "pretrainedResnet_quant.tflite")
    first = g.nodes[0]
    assert first.op == "conv2d" and first.attrs["pad"] == (1, 1, 1, 1) and first.attrs["stride"] == (1, 1)
    zp = int(g.t(first.outputs[0]).quant.zero_point[0])
    assert first.attrs["act"] == (zp, 127)  # RELU: lower bound at the zero point
    g = load_tflite(mlperf_dir / "kws_ref_model.tflite")
    c = g.nodes[0]  # 10x4 kernel, stride 2, SAME on a 49x10 input: TF puts the extra pixel after
    assert c.attrs["pad"] == (4, 1, 5, 1) and g.t(c.outputs[0]).shape == (1, 25, 5, 64)


@pytest.mark.parametrize("name", sorted(INT8))
def test_int8_model_bit_exact_with_tflite_micro(mlperf_dir, name):
    """100 random int8 inputs: every output byte equals TFLite Micro's."""
    path = mlperf_dir / f"{name}.tflite"
    g = requantize(load_tflite(path))
    x = _rand_int8(INT8[name][0], 100, seed=sum(map(ord, name)))
    want = tflm_run(path, x)
    got = interp.run(g, x)[g.outputs[0]]
    assert got.dtype == np.int8 and got.shape == want.shape
    assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() == 0


@pytest.mark.parametrize("name", sorted(INT8))
def test_every_intermediate_tensor_bit_exact_with_tflite_micro(mlperf_dir, name):
    """Softmax hides most differences behind saturation: compare every layer's output too."""
    import tflite
    from tflite_micro.python.tflite_micro import runtime
    path = mlperf_dir / f"{name}.tflite"
    g = requantize(load_tflite(path))
    tm = tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0)
    index = {tm.Tensors(i).Name().decode(): i for i in range(tm.TensorsLength())}
    tflm = runtime.Interpreter.from_file(str(path), intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    x = _rand_int8(INT8[name][0], 8, seed=7)
    ours = interp.run(g, x, all_tensors=True)
    compared = 0
    for s in range(len(x)):
        tflm.set_input(x[s:s + 1], 0)
        tflm.invoke()
        for n in g.nodes:
            t = n.outputs[0]
            ref = tflm.GetTensor(index[t], 0)["tensor_data"]
            np.testing.assert_array_equal(ours[t][s].reshape(ref.shape), ref, err_msg=f"{name} {n.name}")
            compared += ref.size
    assert compared > 0


@pytest.mark.parametrize("name", sorted(FLOAT))
def test_float_model_matches_litert(mlperf_dir, name):
    path = mlperf_dir / f"{name}.tflite"
    g = load_tflite(path)
    assert g.t(g.inputs[0]).dtype == "float32" and g.t(g.outputs[0]).dtype == "float32"
    assert {n.op for n in g.nodes} == INT8[FLOAT[name]][1]
    shape = g.t(g.inputs[0]).shape
    x = np.random.default_rng(3).uniform(-1, 1, (20,) + shape[1:]).astype(np.float32)
    want = litert_run(path, x)
    got = interp.run(g, x)[g.outputs[0]]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_hybrid_float_model_conv_weights_are_int8_in_the_file(mlperf_dir):
    """kws_ref_model_float32 stores CONV_2D weights as int8 (dynamic-range quantization)."""
    g = load_tflite(mlperf_dir / "kws_ref_model_float32.tflite")
    hybrid = [n for n in g.nodes if "hybrid" in n.attrs]
    assert len(hybrid) == 5 and all(n.op == "conv2d" for n in hybrid)
    w = g.t(hybrid[0].inputs[1])
    assert w.dtype == "float32" and w.quant is None
    s = hybrid[0].attrs["hybrid"]["weight_scale"]
    assert np.array_equal(np.rint(w.data / np.float32(s)), np.rint(w.data / np.float32(s)).clip(-127, 127))


@pytest.mark.parametrize("name", sorted(INT8))
def test_tflm_arena_bytes(mlperf_dir, name):
    assert tflm_arena_bytes(mlperf_dir / f"{name}.tflite") == INT8[name][2]


def test_interp_runs_100_resnet8_inferences_in_seconds(mlperf_dir):
    g = requantize(load_tflite(mlperf_dir / "pretrainedResnet_quant.tflite"))
    x = _rand_int8((1, 32, 32, 3), 100, seed=0)
    t = time.perf_counter()
    interp.run(g, x)
    assert time.perf_counter() - t < 20


# -- one-op models against TFLite Micro ---------------------------------------------------------

def _q(name, shape, scale, zp, dtype="int8", **kw):
    return dict(name=name, shape=list(shape), dtype=dtype, scale=list(np.atleast_1d(scale)),
                zero_point=list(np.atleast_1d(zp)), **kw)


def _check_vs_tflm(model: bytes, xs: list[np.ndarray]):
    from tflite_micro.python.tflite_micro import runtime
    g = requantize(load_tflite(model))
    tflm = runtime.Interpreter.from_bytes(model)
    n = xs[0].shape[0]
    want = []
    for s in range(n):
        for i, x in enumerate(xs):
            tflm.set_input(x[s:s + 1], i)
        tflm.invoke()
        want.append(tflm.get_output(0).copy())
    got = interp.run(g, dict(zip(g.inputs, xs)))[g.outputs[0]]
    want = np.concatenate(want)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    return g, want


def _pool_opts(padding, stride, k, act=0):
    return ("Pool2DOptions", {"Padding": padding, "StrideH": stride[0], "StrideW": stride[1],
                              "FilterHeight": k[0], "FilterWidth": k[1], "FusedActivationFunction": act})


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("padding,stride,k", [(0, (2, 2), (3, 3)), (0, (1, 2), (2, 3)), (1, (2, 1), (3, 2))])
def test_pools_with_edge_windows(tflite_builder, op, padding, stride, k):
    """SAME windows at the border average over in-bounds pixels only, rounding half away from zero."""
    h, w = 7, 9
    oh = -(-h // stride[0]) if padding == 0 else (h - k[0]) // stride[0] + 1
    ow = -(-w // stride[1]) if padding == 0 else (w - k[1]) // stride[1] + 1
    m = tflite_builder([_q("x", (1, h, w, 5), 0.05, 3), _q("y", (1, oh, ow, 5), 0.05, 3)],
                       [dict(op=op, inputs=[0], outputs=[1], options=_pool_opts(padding, stride, k, act=3))],
                       [0], [1])
    g, want = _check_vs_tflm(m, [_rand_int8((1, h, w, 5), 6, seed=1)])
    assert want.min() >= 3 and want.max() <= 3 + round(6 / 0.05)  # relu6 clamp in effect


def test_concatenation_quantize_dequantize(tflite_builder):
    """float -> QUANTIZE -> int8 -> QUANTIZE (requantize) -> CONCAT with MAX_POOL -> DEQUANTIZE."""
    shape = (1, 4, 6, 3)
    tensors = [dict(name="x", shape=list(shape), dtype="float32"),
               _q("xq", shape, 0.02, -5), _q("xr", shape, 0.037, 11), _q("mp", shape, 0.037, 11),
               _q("cat", (1, 4, 6, 6), 0.037, 11), dict(name="y", shape=[1, 4, 6, 6], dtype="float32")]
    ops = [dict(op="QUANTIZE", inputs=[0], outputs=[1]),
           dict(op="QUANTIZE", inputs=[1], outputs=[2]),
           dict(op="MAX_POOL_2D", inputs=[2], outputs=[3], options=_pool_opts(0, (1, 1), (3, 3))),
           dict(op="CONCATENATION", inputs=[2, 3], outputs=[4],
                options=("ConcatenationOptions", {"Axis": -1, "FusedActivationFunction": 0})),
           dict(op="DEQUANTIZE", inputs=[4], outputs=[5])]
    m = tflite_builder(tensors, ops, [0], [5])
    x = np.random.default_rng(2).uniform(-3, 3, (8,) + shape[1:]).astype(np.float32)
    x[0, 0, 0, :3] = [0.01, -0.01, 0.03]  # exact halves of the 0.02 scale round away from zero
    g, want = _check_vs_tflm(m, [x])
    assert [n.op for n in g.nodes] == ["quantize", "quantize", "max_pool2d", "concat", "dequantize"]
    assert g.nodes[3].attrs["axis"] == 3


@pytest.mark.parametrize("beta,in_scale", [(1.0, 0.1), (0.5, 0.02), (2.0, 0.25)])
def test_softmax_int8(tflite_builder, beta, in_scale):
    m = tflite_builder([_q("x", (1, 16), in_scale, -3), _q("y", (1, 16), 1 / 256, -128)],
                       [dict(op="SOFTMAX", inputs=[0], outputs=[1], options=("SoftmaxOptions", {"Beta": beta}))],
                       [0], [1])
    x = _rand_int8((1, 16), 40, seed=4)
    x[:4] = np.array([[-128] * 16, [127] * 16, [0] * 15 + [1], list(range(-128, 128, 16))], np.int8)
    g, want = _check_vs_tflm(m, [x])
    assert len(np.unique(want)) > 20  # a spread of outputs, not all saturated


def test_add_with_relu_and_different_scales(tflite_builder):
    shape = (1, 5, 5, 8)
    m = tflite_builder([_q("a", shape, 0.07, -20), _q("b", shape, 0.02, 9), _q("y", shape, 0.09, -128)],
                       [dict(op="ADD", inputs=[0, 1], outputs=[2],
                             options=("AddOptions", {"FusedActivationFunction": 1}))], [0, 1], [2])
    _check_vs_tflm(m, [_rand_int8(shape, 6, seed=5), _rand_int8(shape, 6, seed=6)])


def _conv_model(builder, op, in_shape, w_shape, out_shape, opts, per_channel_axis, seed):
    rng = np.random.default_rng(seed)
    n_out = w_shape[per_channel_axis]
    s_in = 0.05
    s_w = rng.uniform(0.002, 0.01, n_out).astype(np.float32)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    bias = rng.integers(-3000, 3000, n_out).astype(np.int32)
    k = int(np.prod(w_shape)) // n_out if op != "DEPTHWISE_CONV_2D" else w_shape[1] * w_shape[2]
    s_out = float(s_in * s_w.mean() * np.sqrt(k) * 74 * 74 * 3 / 128)
    tensors = [_q("x", in_shape, s_in, 7),
               dict(name="w", shape=list(w_shape), dtype="int8", data=w, scale=list(s_w),
                    zero_point=[0] * n_out, axis=per_channel_axis),
               dict(name="b", shape=[n_out], dtype="int32", data=bias, scale=list(s_in * s_w),
                    zero_point=[0] * n_out),
               _q("y", out_shape, s_out, -4)]
    return builder(tensors, [dict(op=op, inputs=[0, 1, 2], outputs=[3], options=opts)], [0], [3])


def test_conv2d_strided_dilated_same_relu6(tflite_builder):
    opts = ("Conv2DOptions", {"Padding": 0, "StrideH": 2, "StrideW": 1, "DilationHFactor": 1,
                              "DilationWFactor": 2, "FusedActivationFunction": 3})
    m = _conv_model(tflite_builder, "CONV_2D", (1, 9, 8, 3), (6, 3, 3, 3), (1, 5, 8, 6), opts, 0, seed=8)
    _check_vs_tflm(m, [_rand_int8((1, 9, 8, 3), 4, seed=9)])


def test_depthwise_conv2d_multiplier_2_per_channel(tflite_builder):
    opts = ("DepthwiseConv2DOptions", {"Padding": 0, "StrideH": 2, "StrideW": 2, "DepthMultiplier": 2,
                                       "DilationHFactor": 1, "DilationWFactor": 1, "FusedActivationFunction": 1})
    m = _conv_model(tflite_builder, "DEPTHWISE_CONV_2D", (1, 7, 6, 3), (1, 3, 3, 6), (1, 4, 3, 6), opts, 3,
                    seed=10)
    g, _ = _check_vs_tflm(m, [_rand_int8((1, 7, 6, 3), 4, seed=11)])
    assert g.nodes[0].attrs["depth_multiplier"] == 2


def test_fully_connected_on_a_4d_input(tflite_builder):
    rng = np.random.default_rng(12)
    w = rng.integers(-127, 128, (10, 24)).astype(np.int8)
    tensors = [_q("x", (1, 2, 3, 4), 0.05, -1),
               dict(name="w", shape=[10, 24], dtype="int8", data=w, scale=[0.004], zero_point=[0]),
               dict(name="b", shape=[10], dtype="int32", data=rng.integers(-500, 500, 10).astype(np.int32),
                    scale=[0.0002], zero_point=[0]),
               _q("y", (1, 10), 0.06, 5)]
    m = tflite_builder(tensors, [dict(op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3],
                                      options=("FullyConnectedOptions", {"FusedActivationFunction": 0}))],
                       [0], [3])
    _check_vs_tflm(m, [_rand_int8((1, 2, 3, 4), 5, seed=13)])


# -- bad files ------------------------------------------------------------------------------------

def test_empty_garbage_and_wrong_identifier(tmp_path, mlperf_dir):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_tflite(empty)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match="TFL3"):
        load_tflite(junk)
    good = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    with pytest.raises(ModelError, match="not a TFLite file"):
        load_tflite(good[:4] + b"ONNX" + good[8:])
    with pytest.raises(ModelError, match="does not exist"):
        load_tflite(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="folder"):
        load_tflite(tmp_path)


@pytest.mark.parametrize("name", ["ad01_int8", "kws_ref_model", "vww_96_int8"])
def test_truncated_files(mlperf_dir, name):
    good = (mlperf_dir / f"{name}.tflite").read_bytes()
    for cut in (8, 12, 64, 1000, len(good) // 3, len(good) // 2, len(good) - 100):
        with pytest.raises(ModelError, match="TFLite"):
            load_tflite(good[:cut])


def test_offsets_out_of_range_and_absurd_dims(mlperf_dir):
    good = bytearray((mlperf_dir / "kws_ref_model.tflite").read_bytes())
    bad = bytearray(good)
    bad[0:4] = (len(good) + 40).to_bytes(4, "little")  # root table beyond the end
    with pytest.raises(ModelError, match="outside the file"):
        load_tflite(bytes(bad))
    shape = np.array([1, 49, 10, 1], "<i4").tobytes()
    assert good.count(shape) >= 1
    huge = bytes(good).replace(shape, np.array([1, 100000, 100000, 1000], "<i4").tobytes())
    with pytest.raises(ModelError, match="absurd shape"):
        load_tflite(huge)
    negative = bytes(good).replace(shape, np.array([1, -49, 10, 1], "<i4").tobytes())
    with pytest.raises(ModelError, match="invalid shape"):
        load_tflite(negative)


def test_constant_buffer_too_short(tflite_builder):
    tensors = [_q("x", (1, 4), 0.1, 0),
               dict(name="w", shape=[3, 4], dtype="int8", data=np.zeros(8, np.int8), scale=[0.1], zero_point=[0]),
               _q("y", (1, 3), 0.1, 0)]
    m = tflite_builder(tensors, [dict(op="FULLY_CONNECTED", inputs=[0, 1, -1], outputs=[2])], [0], [2])
    with pytest.raises(ModelError, match="has 8 bytes"):
        load_tflite(m)


def test_unsupported_ops_are_all_named(tflite_builder):
    t = [_q(n, (1, 8), 1 / 256, -128) for n in "abcd"]
    ops = [dict(op="SIN", inputs=[0], outputs=[1]), dict(op="LOG", inputs=[1], outputs=[2]),
           dict(op="SIN", inputs=[2], outputs=[3])]
    with pytest.raises(UnsupportedError) as e:
        load_tflite(tflite_builder(t, ops, [0], [3]))
    msg = str(e.value)
    assert "SIN (x2)" in msg and "LOG (x1)" in msg and "FULLY_CONNECTED" in msg


def test_random_corruption_never_crashes_or_hangs(mlperf_dir):
    """Flipped bytes anywhere: the file loads or gives an EdgecompError, quickly."""
    good = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    rng = np.random.default_rng(0)
    head = len(good) // 8  # the flatbuffer tables (not only weight bytes) are hit often
    for trial in range(300):
        bad = bytearray(good)
        for _ in range(int(rng.integers(1, 8))):
            pos = int(rng.integers(0, head if trial % 2 else len(good)))
            bad[pos] = int(rng.integers(0, 256))
        t = time.perf_counter()
        try:
            load_tflite(bytes(bad))
        except EdgecompError:
            pass
        assert time.perf_counter() - t < 2.0


@pytest.mark.parametrize("wtype", ["float16", "int8"])
def test_dequantized_constant_weights_are_folded(tflite_builder, tmp_path, wtype):
    """float16 or int8 weights behind a DEQUANTIZE op become float32 constants (same result as LiteRT)."""
    rng = np.random.default_rng(14)
    if wtype == "float16":
        w = dict(name="w16", shape=[6, 10], dtype="float16", data=rng.standard_normal((6, 10)).astype(np.float16))
    else:
        w = dict(name="w8", shape=[6, 10], dtype="int8", data=rng.integers(-127, 128, (6, 10)).astype(np.int8),
                 scale=list(rng.uniform(0.01, 0.02, 6)), zero_point=[0] * 6, axis=0)
    tensors = [dict(name="x", shape=[1, 10], dtype="float32"), w,
               dict(name="w", shape=[6, 10], dtype="float32"), dict(name="y", shape=[1, 6], dtype="float32")]
    ops = [dict(op="DEQUANTIZE", inputs=[1], outputs=[2]),
           dict(op="FULLY_CONNECTED", inputs=[0, 2, -1], outputs=[3],
                options=("FullyConnectedOptions", {"FusedActivationFunction": 1}))]
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_builder(tensors, ops, [0], [3]))
    g = load_tflite(path)
    assert [n.op for n in g.nodes] == ["fully_connected"] and g.t(g.nodes[0].inputs[1]).dtype == "float32"
    x = rng.standard_normal((5, 1, 10)).astype(np.float32)
    got = interp.run(g, x)[g.outputs[0]]
    np.testing.assert_allclose(got, litert_run(path, x), atol=1e-5)
    assert (got == 0).any() and (got > 0).any()  # the fused RELU is applied


def test_random_conv_and_pool_configurations(tflite_builder):
    """A seeded sweep of kernel/stride/dilation/padding/activation/channel choices, each vs TFLM."""
    from edgecomp import ir
    rng = np.random.default_rng(15)
    for case in range(80):
        op = ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"][case % 4]
        h, w, c = (int(v) for v in rng.integers(3, 10, 3))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2)) if op in ("CONV_2D", "DEPTHWISE_CONV_2D") else (1, 1)
        padding = int(rng.integers(0, 2))
        act = int(rng.choice([0, 1, 2, 3]))
        if padding == 1 and ((kh - 1) * dh + 1 > h or (kw - 1) * dw + 1 > w):
            padding = 0
        pads = ((0, 0), (0, 0)) if padding else (ir.same_padding(h, kh, sh, dh), ir.same_padding(w, kw, sw, dw))
        oh = ir.conv_output_size(h, kh, sh, dh, *pads[0])
        ow = ir.conv_output_size(w, kw, sw, dw, *pads[1])
        x = _rand_int8((1, h, w, c), 3, seed=100 + case)
        if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            m = tflite_builder([_q("x", (1, h, w, c), 0.04, -7), _q("y", (1, oh, ow, c), 0.04, -7)],
                               [dict(op=op, inputs=[0], outputs=[1], options=_pool_opts(padding, (sh, sw), (kh, kw), act))],
                               [0], [1])
        elif op == "CONV_2D":
            o = int(rng.integers(1, 9))
            opts = ("Conv2DOptions", {"Padding": padding, "StrideH": sh, "StrideW": sw, "DilationHFactor": dh,
                                      "DilationWFactor": dw, "FusedActivationFunction": act})
            m = _conv_model(tflite_builder, op, (1, h, w, c), (o, kh, kw, c), (1, oh, ow, o), opts, 0, seed=case)
        else:
            mult = int(rng.integers(1, 3))
            opts = ("DepthwiseConv2DOptions", {"Padding": padding, "StrideH": sh, "StrideW": sw,
                                               "DepthMultiplier": mult, "DilationHFactor": dh,
                                               "DilationWFactor": dw, "FusedActivationFunction": act})
            m = _conv_model(tflite_builder, op, (1, h, w, c), (1, kh, kw, c * mult), (1, oh, ow, c * mult), opts, 3,
                            seed=case)
        _check_vs_tflm(m, [x])


def test_reference_runners_refuse_corrupt_files(tmp_path, mlperf_dir):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((mlperf_dir / "ad01_int8.tflite").read_bytes()[:5000])
    for fn in (lambda: tflm_run(bad, np.zeros((1, 640), np.int8)), lambda: tflm_arena_bytes(bad),
               lambda: litert_run(bad, np.zeros((1, 640), np.float32))):
        with pytest.raises(ModelError):
            fn()
    with pytest.raises(ModelError, match="shape"):
        tflm_run(mlperf_dir / "ad01_int8.tflite", np.zeros((2, 64), np.int8))


@pytest.mark.parametrize("scale", [0.1, 0.037, 1 / 3])
def test_quantize_rounding_at_exact_halves_matches_tflm(tflite_builder, scale):
    """QUANTIZE divides in float32 and rounds half away from zero, as TFLM does (a double division differs)."""
    n = 256
    m = tflite_builder([dict(name="x", shape=[1, n], dtype="float32"), _q("y", (1, n), scale, 0)],
                       [dict(op="QUANTIZE", inputs=[0], outputs=[1])], [0], [1])
    half = ((np.arange(-128, 128) + 0.5) * np.float64(np.float32(scale))).astype(np.float32)
    x = np.stack([half, np.nextafter(half, np.float32(np.inf)), np.nextafter(half, np.float32(-np.inf))])
    _check_vs_tflm(m, [x])
