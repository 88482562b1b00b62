"""Generated C against TensorFlow Lite Micro on models the tests build themselves.

A clone of the repository without the MLPerf Tiny files (tests/conftest.py, ``mlperf_dir``)
still checks that the generated C is bit-exact with TFLM for every TFLite op edgecomp reads
(``frontends.tflite.SUPPORTED``), with the reference kernels and the DSP kernels, natively and
under QEMU, and that the memory plan is safe and smaller than TFLM's arena.
"""
from __future__ import annotations

import shutil

from pathlib import Path

import numpy as np
import pytest

from edgecomp import api
from edgecomp.backends.cortex_m import write_bundle
from edgecomp.frontends.tflite import SUPPORTED, load_tflite
from edgecomp.reference import tflm_arena_bytes, tflm_run

SAME, VALID = 0, 1
RELU, RELU6 = 1, 3


class Net:
    """A tiny TFLite model under construction (tensors + ops for conftest.build_tflite)."""

    def __init__(self, seed: int):
        self.tensors: list[dict] = []
        self.ops: list[dict] = []
        self.rng = np.random.default_rng(seed)

    def t(self, name, shape, scale=None, zp=0, dtype="int8", **kw) -> int:
        d = dict(name=name, shape=list(shape), dtype=dtype, **kw)
        if scale is not None:
            d.update(scale=list(np.atleast_1d(scale).astype(float)), zero_point=list(np.atleast_1d(zp).astype(int)))
        self.tensors.append(d)
        return len(self.tensors) - 1

    def scale(self, i) -> float:
        return float(self.tensors[i]["scale"][0])

    def shape(self, i) -> list[int]:
        return self.tensors[i]["shape"]

    def op(self, op, ins, outs, options=None) -> int:
        self.ops.append(dict(op=op, inputs=ins, outputs=outs, **({"options": options} if options else {})))
        return outs[0]

    def conv(self, x, out_shape, k, *, depthwise=False, mult=1, stride=(1, 1), pad=SAME, dil=(1, 1), act=0,
             name="conv") -> int:
        """Per-channel int8 weights, int32 bias, output scale chosen so outputs spread over int8."""
        cin = self.shape(x)[3]
        cout = out_shape[3]
        wshape = (1, k[0], k[1], cin * mult) if depthwise else (cout, k[0], k[1], cin)
        axis = 3 if depthwise else 0
        s_w = self.rng.uniform(0.002, 0.01, cout)
        w = self.rng.integers(-127, 128, wshape).astype(np.int8)
        s_in = self.scale(x)
        taps = k[0] * k[1] * (1 if depthwise else cin)
        s_out = s_in * float(s_w.mean()) * np.sqrt(taps) * 74 * 74 * 3 / 128
        wi = self.t(f"{name}_w", wshape, s_w, [0] * cout, data=w, axis=axis)
        bi = self.t(f"{name}_b", [cout], s_in * s_w, [0] * cout, dtype="int32",
                    data=self.rng.integers(-3000, 3000, cout).astype(np.int32))
        y = self.t(name, out_shape, s_out, int(self.rng.integers(-10, 10)))
        if depthwise:
            opts = ("DepthwiseConv2DOptions", {"Padding": pad, "StrideH": stride[0], "StrideW": stride[1],
                                               "DepthMultiplier": mult, "DilationHFactor": dil[0],
                                               "DilationWFactor": dil[1], "FusedActivationFunction": act})
            return self.op("DEPTHWISE_CONV_2D", [x, wi, bi], [y], opts)
        opts = ("Conv2DOptions", {"Padding": pad, "StrideH": stride[0], "StrideW": stride[1],
                                  "DilationHFactor": dil[0], "DilationWFactor": dil[1], "FusedActivationFunction": act})
        return self.op("CONV_2D", [x, wi, bi], [y], opts)

    def fc(self, x, n_out, name="fc", act=0) -> int:
        n_in = int(np.prod(self.shape(x)[1:]))
        s_w = 0.004
        w = self.rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
        s_out = self.scale(x) * s_w * np.sqrt(n_in) * 74 * 74 * 3 / 128
        wi = self.t(f"{name}_w", [n_out, n_in], s_w, 0, data=w)
        bi = self.t(f"{name}_b", [n_out], self.scale(x) * s_w, 0, dtype="int32",
                    data=self.rng.integers(-500, 500, n_out).astype(np.int32))
        y = self.t(name, [1, n_out], s_out, 3)
        return self.op("FULLY_CONNECTED", [x, wi, bi], [y], ("FullyConnectedOptions", {"FusedActivationFunction": act}))

    def pool(self, op, x, out_shape, k, stride, pad, act=0) -> int:
        y = self.t(f"{op.lower()}_{len(self.ops)}", out_shape, self.scale(x), self.tensors[x]["zero_point"][0])
        return self.op(op, [x], [y], ("Pool2DOptions", {"Padding": pad, "StrideH": stride[0], "StrideW": stride[1],
                                                         "FilterHeight": k[0], "FilterWidth": k[1],
                                                         "FusedActivationFunction": act}))


def cnn(builder) -> bytes:
    """float -> QUANTIZE -> conv s2 relu6 -> depthwise relu -> ADD (residual, relu) -> conv 1x1 -> MAX_POOL
    -> AVERAGE_POOL (SAME, edge windows) -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX -> DEQUANTIZE -> float."""
    n = Net(1)
    x = n.t("x", (1, 12, 10, 3), dtype="float32")
    xq = n.op("QUANTIZE", [x], [n.t("xq", (1, 12, 10, 3), 0.04, -3)])
    c1 = n.conv(xq, (1, 6, 5, 8), (3, 3), stride=(2, 2), act=RELU6, name="c1")
    d1 = n.conv(c1, (1, 6, 5, 8), (3, 3), depthwise=True, act=RELU, name="d1")
    a = n.op("ADD", [c1, d1], [n.t("add", (1, 6, 5, 8), 0.5 * (n.scale(c1) + n.scale(d1)), -20)],
             ("AddOptions", {"FusedActivationFunction": RELU}))
    c2 = n.conv(a, (1, 6, 5, 12), (1, 1), name="c2")
    mp = n.pool("MAX_POOL_2D", c2, (1, 3, 3, 12), (2, 2), (2, 2), SAME)
    ap = n.pool("AVERAGE_POOL_2D", mp, (1, 2, 2, 12), (2, 2), (2, 2), SAME)
    r = n.op("RESHAPE", [ap], [n.t("flat", (1, 48), n.scale(ap), n.tensors[ap]["zero_point"][0])])
    f = n.fc(r, 10)
    s = n.op("SOFTMAX", [f], [n.t("prob", (1, 10), 1 / 256, -128)], ("SoftmaxOptions", {"Beta": 1.0}))
    y = n.op("DEQUANTIZE", [s], [n.t("y", (1, 10), dtype="float32")])
    return builder(n.tensors, n.ops, [x], [y])


def branches(builder) -> bytes:
    """int8 -> dilated conv -> depthwise x2 s2 -> CONCATENATION with a MAX_POOL branch (requantized by a
    QUANTIZE int8 -> int8) -> AVERAGE_POOL VALID -> FULLY_CONNECTED on a 4-D input -> int8."""
    n = Net(2)
    x = n.t("x", (1, 9, 9, 4), 0.05, 7)
    c = n.conv(x, (1, 9, 9, 6), (3, 3), dil=(2, 1), act=RELU, name="cd")
    d = n.conv(c, (1, 5, 5, 12), (3, 3), depthwise=True, mult=2, stride=(2, 2), name="dw2")
    mp = n.pool("MAX_POOL_2D", c, (1, 5, 5, 6), (3, 3), (2, 2), SAME)
    rq = n.op("QUANTIZE", [mp], [n.t("mp_rq", (1, 5, 5, 6), n.scale(d), n.tensors[d]["zero_point"][0])])
    cat = n.op("CONCATENATION", [d, rq], [n.t("cat", (1, 5, 5, 18), n.scale(d), n.tensors[d]["zero_point"][0])],
               ("ConcatenationOptions", {"Axis": 3, "FusedActivationFunction": 0}))
    ap = n.pool("AVERAGE_POOL_2D", cat, (1, 2, 2, 18), (3, 3), (2, 2), VALID)
    y = n.fc(ap, 7, name="out")
    return builder(n.tensors, n.ops, [x], [y])


MODELS = {"cnn": cnn, "branches": branches}


def _ops(model: bytes) -> set[str]:
    import tflite
    m = tflite.Model.GetRootAsModel(model, 0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    return {names[m.OperatorCodes(i).BuiltinCode()] for i in range(m.OperatorCodesLength())}


#: Builtins whose TFLM comparison lives in the op family's own test module (one-op models on every
#: axis); the models here cover the classic CNN ops.
OWN_TESTS = {
    "test_ops_activations.py": ("HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "PRELU", "RELU", "RELU6", "RELU_N1_TO_1",
                                "TANH"),
    "test_ops_binary.py": ("MAXIMUM", "MINIMUM", "MUL", "SQUARED_DIFFERENCE", "SUB"),
    "test_ops_axis.py": ("ARG_MAX", "L2_NORMALIZATION"),
    "test_ops_mean.py": ("MEAN",),
    "test_ops_conv_variants.py": ("TRANSPOSE_CONV",),
    "test_recurrent.py": ("UNIDIRECTIONAL_SEQUENCE_LSTM",),
    "test_ops_attention.py": ("BATCH_MATMUL",),
    "test_ops_data_tflite.py": ("DEPTH_TO_SPACE", "EXPAND_DIMS", "GATHER", "PACK", "PAD", "PADV2", "RESIZE_BILINEAR",
                                "RESIZE_NEAREST_NEIGHBOR", "SLICE", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQUEEZE",
                                "STRIDED_SLICE", "TRANSPOSE", "UNPACK"),
}


def test_the_models_cover_every_tflite_op_edgecomp_reads(tflite_builder):
    """Every builtin the TFLite frontend reads is compared with TFLM: in the models here, or in its
    family's test module (which names it)."""
    covered = set().union(*(_ops(make(tflite_builder)) for make in MODELS.values()))
    elsewhere = {op for ops in OWN_TESTS.values() for op in ops}
    for f, ops in OWN_TESTS.items():
        text = (Path(__file__).parent / f).read_text()
        assert all(op in text for op in ops), (f, [op for op in ops if op not in text])
    assert set(SUPPORTED.values()) == covered | elsewhere, set(SUPPORTED.values()) ^ (covered | elsewhere)


def _inputs(path, n=16):
    g = load_tflite(path)
    t = g.tensors[g.inputs[0]]
    rng = np.random.default_rng(5)
    if t.dtype == "float32":
        return rng.uniform(-2.5, 2.5, (n,) + t.shape[1:]).astype(np.float32)
    return rng.integers(-128, 128, (n,) + t.shape[1:], dtype=np.int8)


def _model(tmp_path, tflite_builder, name):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(MODELS[name](tflite_builder))
    return path


@pytest.mark.toolchain
@pytest.mark.parametrize("kernels", ["reference", "dsp"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_host_build_bit_exact_with_tflm(tmp_path, tflite_builder, name, kernels):
    path = _model(tmp_path, tflite_builder, name)
    x = _inputs(path)
    want = tflm_run(path, x)
    assert len(np.unique(want)) > 10, "outputs spread over many values (a constant output checks little)"
    man = write_bundle(load_tflite(path), "host", tmp_path / "b", {"kernels": kernels})
    got = api.run_bundle(tmp_path / "b", x, emulate=False).outputs
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert man["options"]["kernels"] == kernels


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_cortex_m4_under_qemu_bit_exact_with_tflm_and_smaller(tmp_path, tflite_builder, name):
    """DSP kernels on the Cortex-M4 firmware; one inference's RAM (arena + static + stack) against TFLM's arena."""
    path = _model(tmp_path, tflite_builder, name)
    x = _inputs(path, 8)
    man = write_bundle(load_tflite(path), "cortex-m4", tmp_path / "b", {})
    got = api.run_bundle(tmp_path / "b", x).outputs
    np.testing.assert_array_equal(got.reshape((len(x),) + got.shape[1:]), tflm_run(path, x).reshape(got.shape))
    tflm = tflm_arena_bytes(path)
    assert man["ram"]["arena_bytes"] < tflm, (man["ram"], tflm)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_memory_plan_is_safe_and_below_plain_lifetimes(tmp_path, tflite_builder, name):
    from edgecomp.passes.fuse_residual import fuse_residual_adds
    from edgecomp.passes.memory_plan import plan_memory
    from memory_check import simulate  # the replay of a plan that fails on a clobbered tensor

    g = fuse_residual_adds(load_tflite(_model(tmp_path, tflite_builder, name)))
    plan = plan_memory(g)
    simulate(g, plan)  # no live tensor is overwritten
    assert plan.arena_bytes <= plan_memory(g, inplace=False).arena_bytes
