"""Binary elementwise ops with broadcasting against their references (issue 16, part 1).

TFLite MUL, SUB, ADD, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE: int8 0 LSB against TensorFlow Lite Micro
on 100 random inputs (two runtime inputs broadcast up to 5-D; one-input models whose second operand
is a pooled map or a constant through the host C build), float32 within 1e-5.  ONNX Mul, Add, Sub,
Div by a constant, Min, Max, input normalisation: QDQ graphs within 1 LSB of ONNX Runtime, float32
within 1e-5.  The squeeze-excite multiply's DSP kernel (channel tails, more than 64 channels, two
batches) equal to TFLM on the host and under QEMU; the memory planner never overwrites a broadcast
operand nor a tensor still to be read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import build_tflite
from edgecomp import interp, ir
from edgecomp.backends.c.generate import lower
from edgecomp.frontends.onnx import from_onnx
from edgecomp.frontends.tflite import load_tflite
from edgecomp.options import CodegenOptions
from onnx_qdq import float_graph, ir_input, onnx_out, ort_run, qdq_graph, quantized
from op_check import N_INPUTS, close, f, host_c, interp_samples, q, spread, tflite_check, tflm

OPS = ["ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"]
OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}
BROADCASTS = [((2, 4, 5, 3), (2, 4, 5, 3)), ((2, 4, 5, 3), (2, 1, 1, 3)), ((1, 1, 1, 3), (2, 4, 5, 3)),
              ((2, 3, 4), (3, 1)), ((3, 5), (5,)), ((1, 2, 3, 4, 5), (1, 2, 1, 4, 1)), ((4, 6), (1,))]


def _opts(op: str, act: int = 0):
    return (OPTIONS[op], {"FusedActivationFunction": act}) if op in OPTIONS else None


def _quants(op: str, rng):
    if op in ("MAXIMUM", "MINIMUM"):  # TFLM compares the integers: one quantization for all three
        s, z = float(rng.uniform(0.01, 0.1)), int(rng.integers(-50, 50))
        return [(s, z)] * 3
    return [(float(rng.uniform(0.01, 0.1)), int(rng.integers(-50, 50))) for _ in range(3)]


@pytest.mark.parametrize("op", OPS)
def test_tflite_int8_two_inputs_broadcast_vs_tflm(op):
    """Both operands at run time, broadcast as TFLM broadcasts (1-D to 5-D, either side), 100 inputs."""
    rng = np.random.default_rng(OPS.index(op))
    for k, (sa, sb) in enumerate(BROADCASTS):
        out = tuple(np.broadcast_shapes(sa, sb))
        (s1, z1), (s2, z2), (s3, z3) = _quants(op, rng)
        model = build_tflite([q("a", sa, s1, z1), q("b", sb, s2, z2), q("y", out, s3, z3)],
                             [dict(op=op, inputs=[0, 1], outputs=[2], options=_opts(op, k % 4))], [0, 1], [2])
        g = load_tflite(model)
        xs = [rng.integers(-128, 128, (N_INPUTS,) + s, dtype=np.int8) for s in (sa, sb)]
        want = tflm(model, xs)
        close(interp_samples(g, xs), want)
        assert spread(want) > 10, (sa, sb)


def _pooled_model(op: str, shape, rng, dtype="int8"):
    """x -> AVERAGE_POOL over H -> p; y = op(x, p); z = op(y, constant [C]): one input, a runtime
    broadcast and a constant one."""
    n, h, w, c = shape
    (s1, z1), (s2, z2), (s3, z3) = _quants(op, rng)
    pool = ("Pool2DOptions", {"Padding": 1, "StrideH": 1, "StrideW": 1, "FilterHeight": h, "FilterWidth": 1,
                              "FusedActivationFunction": 0})
    if dtype == "int8":
        const = rng.integers(-128, 128, (c,), dtype=np.int8)
        ts = [q("x", shape, s1, z1), q("p", (n, 1, w, c), s1, z1), q("y", shape, s3, z3),
              q("k", (c,), s2 if op not in ("MAXIMUM", "MINIMUM") else s3, z2 if op not in ("MAXIMUM", "MINIMUM") else z3,
                data=const), q("z", shape, s1 if op in ("MAXIMUM", "MINIMUM") else s2, z1 if op in ("MAXIMUM", "MINIMUM")
                               else z2)]
    else:
        const = rng.standard_normal(c).astype(np.float32)
        ts = [f("x", shape), f("p", (n, 1, w, c)), f("y", shape), f("k", (c,), data=const), f("z", shape)]
    ops = [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1], options=pool),
           dict(op=op, inputs=[0, 1], outputs=[2], options=_opts(op)),
           dict(op=op, inputs=[2, 3], outputs=[4], options=_opts(op, 1))]
    return build_tflite(ts, ops, [0], [4])


@pytest.mark.toolchain
@pytest.mark.parametrize("op", OPS)
def test_tflite_int8_broadcast_through_host_c(op):
    """A pooled operand and a constant one: the interpreter equals TFLM, the host C the interpreter."""
    rng = np.random.default_rng(10 + OPS.index(op))
    g, want = tflite_check(_pooled_model(op, (2, 4, 5, 6), rng), rng)
    assert [n.op for n in g.nodes][1:] == [g.nodes[1].op] * 2 and spread(want) > 10


@pytest.mark.toolchain
@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"])
def test_tflite_float_broadcast(op):
    rng = np.random.default_rng(20 + OPS.index(op))
    tflite_check(_pooled_model(op, (1, 3, 4, 5), rng, dtype="float32"), rng, n=10)


@pytest.mark.toolchain
@pytest.mark.parametrize("shape", [(3, 8), (2, 6, 4)])
def test_tflite_int8_2d_3d_constant_operand(shape):
    """MUL and SUB of a 2-D / 3-D tensor with a per-feature constant, batch > 1."""
    rng = np.random.default_rng(len(shape))
    c = rng.integers(-128, 128, shape[-1:], dtype=np.int8)
    ts = [q("x", shape, 0.04, 3), q("k", shape[-1:], 0.02, -7, data=c), q("m", shape, 0.05, 1), q("y", shape, 0.06, -9)]
    ops = [dict(op="MUL", inputs=[0, 1], outputs=[2], options=_opts("MUL")),
           dict(op="SUB", inputs=[1, 2], outputs=[3], options=_opts("SUB"))]
    g, want = tflite_check(build_tflite(ts, ops, [0], [3]), rng)
    assert spread(want) > 30


def _se_model(shape, s_scale=1 / 256, s_zp=-128):
    n, h, w, c = shape
    pool = ("Pool2DOptions", {"Padding": 1, "StrideH": 1, "StrideW": 1, "FilterHeight": h, "FilterWidth": w,
                              "FusedActivationFunction": 0})
    ts = [q("x", shape, 0.05, -3), q("p", (n, 1, 1, c), 0.05, -3), q("s", (n, 1, 1, c), s_scale, s_zp),
          q("y", shape, 0.03, 7)]
    ops = [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1], options=pool), dict(op="LOGISTIC", inputs=[1], outputs=[2]),
           dict(op="MUL", inputs=[2, 0], outputs=[3], options=_opts("MUL"))]
    return build_tflite(ts, ops, [0], [3])


@pytest.mark.toolchain
@pytest.mark.parametrize("shape", [(1, 5, 6, 8), (1, 3, 4, 6), (2, 3, 3, 70)])
def test_squeeze_excite_dsp_kernel_on_the_host(shape):
    """The DSP kernel's C form (the channels after the last four, more than 64 channels, two batches with
    their own scales, the scale as the first operand) equals TFLM."""
    rng = np.random.default_rng(shape[-1])
    g, want = tflite_check(_se_model(shape), rng, dsp=True)
    low = lower(g, CodegenOptions(dsp=True))
    from edgecomp.backends.c.emit.binary import channel_scale
    assert channel_scale(type("G", (), {"g": low})(), low.nodes[-1]) is not None
    assert spread(want) > 50


@pytest.mark.qemu
def test_squeeze_excite_under_qemu_equals_tflm(tmp_path):
    """The Thumb-2 kernel (groups of four, a tail of two, a second chunk of channels) under QEMU."""
    from edgecomp import api
    from edgecomp.reference import tflm_run
    path = tmp_path / "se.tflite"
    path.write_bytes(_se_model((1, 5, 4, 70)))
    x = np.random.default_rng(1).integers(-128, 128, (6, 5, 4, 70), dtype=np.int8)
    man = api.compile_model(path, "cortex-m4", tmp_path / "b")
    assert man["layers"][-1]["kernel"].startswith("mul_s8_channel_scale")
    got = api.run_bundle(tmp_path / "b", x, progress=False).outputs
    want = tflm_run(path, x)
    close(got.reshape(want.shape), want)


# -- ONNX ---------------------------------------------------------------------------------------------

def _save(m, tmp: Path) -> Path:
    p = tmp / "m.onnx"
    onnx.save(m, str(p))
    return p


def _se_onnx(op: str, shape, pooled_first: bool):
    """x -> Q/DQ -> GlobalAveragePool -> Q/DQ -> (Sigmoid -> Q/DQ for Mul) -> op(x, s) -> Q/DQ -> y (the pool
    in x's quantization: an int8 average; with another scale it stays float today)."""
    h = onnx.helper
    inits = [onnx.numpy_helper.from_array(np.asarray(v, t), n) for n, v, t in
             (("s", 0.03, np.float32), ("z", -5, np.int8), ("sp", 0.03, np.float32), ("zp", -5, np.int8),
              ("ss", 1 / 255, np.float32), ("zs", -128, np.int8), ("so", 0.025, np.float32), ("zo", 4, np.int8))]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             h.make_node("GlobalAveragePool", ["xd"], ["p"]), h.make_node("QuantizeLinear", ["p", "sp", "zp"], ["pq"]),
             h.make_node("DequantizeLinear", ["pq", "sp", "zp"], ["pd"])]
    other = "pd"
    if op == "Mul":
        nodes += [h.make_node("Sigmoid", ["pd"], ["sg"]), h.make_node("QuantizeLinear", ["sg", "ss", "zs"], ["sq"]),
                  h.make_node("DequantizeLinear", ["sq", "ss", "zs"], ["sd"])]
        other = "sd"
    ins = [other, "xd"] if pooled_first else ["xd", other]
    nodes += [h.make_node(op, ins, ["m"]), h.make_node("QuantizeLinear", ["m", "so", "zo"], ["mq"]),
              h.make_node("DequantizeLinear", ["mq", "so", "zo"], ["y"])]
    gr = h.make_graph(nodes, "se", [h.make_tensor_value_info("x", 1, list(shape))],
                      [h.make_tensor_value_info("y", 1, list(shape))], inits)
    return h.make_model(gr, opset_imports=[h.make_opsetid("", 20)])


@pytest.mark.toolchain
@pytest.mark.parametrize("op,shape,first", [("Mul", (1, 6, 5, 3), False), ("Mul", (2, 8, 3, 3), True),
                                            ("Add", (1, 4, 3, 5), True), ("Sub", (2, 4, 3, 5), False),
                                            ("Max", (1, 4, 5, 3), False), ("Min", (1, 4, 3, 5), True)])
def test_onnx_int8_squeeze_excite_broadcast(tmp_path, op, shape, first):
    """[N, C, 1, 1] (op) [N, C, H, W] in a QDQ graph: within 1 LSB of ONNX Runtime (interpreter), the host C
    (DSP kernels for Mul) equal to the interpreter.  H * W is odd: the pooled operand's average then has
    no exact halves, which ORT rounds to even and TFLM away from zero (a 1-LSB pool difference would
    add to the op's own)."""
    rng = np.random.default_rng(shape[1] + shape[0])
    m = _se_onnx(op, shape, first)
    g = from_onnx(_save(m, tmp_path))
    ir_op = {"Mul": "mul", "Add": "add", "Sub": "sub", "Max": "maximum", "Min": "minimum"}[op]
    assert ir_op in [n.op for n in g.nodes] and "dequantize" not in [n.op for n in g.nodes]
    x = rng.uniform(-3, 3, (N_INPUTS,) + shape).astype(np.float32)
    xin = ir_input(g, x)
    got = interp.run(g, xin)[g.outputs[0]]
    close(onnx_out(got, shape), quantized(ort_run(m, x), 0.025, 4), lsb=1)
    close(host_c(g, xin.reshape((-1,) + tuple(g.tensors[g.inputs[0]].shape)), dsp=True).reshape(got.shape), got)


CONSTANT_CASES = [  # (op, shape, constant, constant first)
    ("Mul", (1, 4, 5, 6), ("c", (4, 1, 1)), False), ("Div", (2, 3, 4, 5), ("c", (3, 1, 1)), False),
    ("Sub", (1, 4, 5, 6), ("c", (1, 1, 6)), True), ("Add", (2, 12), ("c", (12,)), False),
    ("Sub", (2, 3, 10), ("c", (3, 1)), False), ("Mul", (1, 4, 5, 6), ("s", ()), True)]


@pytest.mark.toolchain
@pytest.mark.parametrize("k", range(len(CONSTANT_CASES)))
def test_onnx_constant_operand_is_an_affine(tmp_path, k):
    """A constant operand (per channel, per column, per row, a scalar; either side): one affine (a table
    for a scalar), int8 within 1 LSB of ONNX Runtime and float32 within 1e-5, host C equal."""
    op, shape, (_, cshape), first = CONSTANT_CASES[k]
    rng = np.random.default_rng(30 + k)
    c = rng.uniform(0.5, 2.0, cshape) * rng.choice([-1, 1], cshape)
    x = rng.uniform(-3, 3, (N_INPUTS,) + shape).astype(np.float32)
    mf = float_graph(op, shape, consts=(c,), const_first=first)
    gf = from_onnx(_save(mf, tmp_path))
    assert [n.op for n in gf.nodes] == ["affine"]
    got = interp.run(gf, ir_input(gf, x))[gf.outputs[0]]
    np.testing.assert_allclose(onnx_out(got, shape), ort_run(mf, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host_c(gf, ir_input(gf, x[:5]).reshape((5,) + tuple(gf.tensors[gf.inputs[0]].shape)))
                               .reshape(got[:len(got) * 5 // N_INPUTS].shape), got[:len(got) * 5 // N_INPUTS],
                               rtol=1e-5, atol=1e-5)
    if first:  # (qdq_graph puts the activation first)
        return
    m = qdq_graph(op, shape, 0.03, -4, 0.04, 6, consts=(c,))
    g = from_onnx(_save(m, tmp_path))
    assert [n.op for n in g.nodes] == (["lut"] if c.size == 1 else ["affine"])
    xin = ir_input(g, x)
    got = interp.run(g, xin)[g.outputs[0]]
    close(onnx_out(got, shape), quantized(ort_run(m, x), 0.04, 6), lsb=1)
    close(host_c(g, xin.reshape((-1,) + tuple(g.tensors[g.inputs[0]].shape))).reshape(got.shape), got)
    assert spread(got) > 50


@pytest.mark.toolchain
def test_onnx_input_normalisation_is_one_affine(tmp_path):
    """(x - mean) / std with per-channel constants: one affine, float32 within 1e-5 of ONNX Runtime."""
    h = onnx.helper
    mean, std = np.array([0.4, 0.5, 0.6], np.float32).reshape(3, 1, 1), np.array([0.2, 0.25, 0.3], np.float32).reshape(3, 1, 1)
    nodes = [h.make_node("Sub", ["x", "mean"], ["c"]), h.make_node("Div", ["c", "std"], ["y"])]
    gr = h.make_graph(nodes, "norm", [h.make_tensor_value_info("x", 1, [1, 3, 4, 5])],
                      [h.make_tensor_value_info("y", 1, [1, 3, 4, 5])],
                      [onnx.numpy_helper.from_array(mean, "mean"), onnx.numpy_helper.from_array(std, "std")])
    m = h.make_model(gr, opset_imports=[h.make_opsetid("", 20)])
    g = from_onnx(_save(m, tmp_path))
    assert [n.op for n in g.nodes] == ["affine"] and g.tensors[g.nodes[0].inputs[1]].shape == (1, 1, 1, 3)
    x = np.random.default_rng(0).uniform(0, 1, (10, 1, 3, 4, 5)).astype(np.float32)
    got = interp.run(g, ir_input(g, x))[g.outputs[0]]
    np.testing.assert_allclose(onnx_out(got, (1, 3, 4, 5)), ort_run(m, x), rtol=1e-5, atol=1e-5)


def test_onnx_refusals_are_clear(tmp_path):
    from edgecomp.errors import UnsupportedError
    m = float_graph("Div", (1, 4), consts=(np.ones((1, 4)),), const_first=True)
    with pytest.raises(UnsupportedError, match="divided by a tensor"):
        from_onnx(_save(m, tmp_path))


# -- memory plan ---------------------------------------------------------------------------------------

def _t(name, shape, dtype="int8", data=None):
    return ir.Tensor(name, shape, dtype, ir.QuantParams([0.05], [2]) if dtype == "int8" else None, data)


@pytest.mark.toolchain
def test_broadcast_operand_is_never_overwritten_and_live_inputs_are_kept():
    """mul(x, s) with s broadcast: the output is x's bytes exactly or apart, never over s; an affine whose
    input is read again later does not write over it (it once did: float Gelu was 0.03 off)."""
    x, s = _t("x", (1, 6, 5, 8)), _t("s", (1, 1, 1, 8))
    y, a, z = _t("y", (1, 6, 5, 8)), _t("a", (1, 6, 5, 8)), _t("z", (1, 6, 5, 8))
    sc = ir.Tensor("sc", (1, 1, 1, 8), "float32", None, np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 1, 1, 8))
    bi = ir.Tensor("bi", (1, 1, 1, 8), "float32", None, np.zeros((1, 1, 1, 8), np.float32))
    nodes = [ir.Node("pool", "avg_pool2d", ["x"], ["s"], {"kernel": (6, 5), "stride": (1, 1), "pad": (0, 0, 0, 0)}),
             ir.Node("m", "mul", ["x", "s"], ["y"], {}),
             ir.Node("aff", "affine", ["y", "sc", "bi"], ["a"], {}),
             ir.Node("m2", "mul", ["y", "a"], ["z"], {})]
    g = ir.Graph("g", {t.name: t for t in (x, s, y, a, z, sc, bi)}, nodes, ["x"], ["z"])
    g.validate()
    plan = lower(g, CodegenOptions()).meta["memory_plan"]
    o, n = plan.offsets, plan.sizes
    assert o["y"] == o["x"] or o["y"] + n["y"] <= o["x"] or o["x"] + n["x"] <= o["y"]
    assert o["y"] + n["y"] <= o["s"] or o["s"] + n["s"] <= o["y"]
    assert o["a"] + n["a"] <= o["y"] or o["y"] + n["y"] <= o["a"]  # y is read again by m2
    xin = np.random.default_rng(0).integers(-128, 128, (4, 6, 5, 8), dtype=np.int8)
    for dsp in (False, True):
        close(host_c(g, xin[:, None], dsp=dsp).reshape(4, 6, 5, 8), interp.run(g, xin)["z"])
