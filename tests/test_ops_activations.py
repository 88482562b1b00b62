"""Unary activations against their references (issue 16, part 1).

TFLite (int8: 0 LSB against TensorFlow Lite Micro, the table builders on all 256 inputs and whole
models on 100 random inputs; float32 within 1e-5): LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU,
RELU, RELU6, RELU_N1_TO_1 (TFLM has none: LiteRT's reference kernels).  ONNX (QDQ graphs as ONNX
Runtime runs them, within 1 LSB; float32 within 1e-5): Sigmoid, Tanh, HardSigmoid, HardSwish,
LeakyRelu, PRelu, Gelu (both forms), Erf, x * sigmoid(x), standalone Relu / Clip.  Every model also
through the host C build (equal to the interpreter), on 2-D, 3-D and 4-D tensors, batch 1 and 2;
the table composition pass; one firmware under QEMU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import build_tflite
from edgecomp import interp, tables
from edgecomp.backends.c.generate import lower
from edgecomp.frontends.onnx import from_onnx
from edgecomp.options import CodegenOptions
from onnx_qdq import float_graph, ir_input, onnx_out, ort_run, qdq_graph, quantized
from op_check import N_INPUTS, close, f, host_c, q, spread, tflite_check

UNARY = {  # builtin -> (options, table builder name, fixed output quantization or None)
    "LOGISTIC": (None, "logistic", (1 / 256, -128)),
    "TANH": (None, "tanh", (1 / 128, 0)),
    "HARD_SWISH": (None, "hard_swish", None),
    "LEAKY_RELU": (("LeakyReluOptions", {"Alpha": 0.2}), "leaky_relu", None),
    "LEAKY_RELU_NEG": (("LeakyReluOptions", {"Alpha": -0.35}), "leaky_relu", None),
    "RELU": (None, "relu", None),
    "RELU6": (None, "relu6", "same"),
    "RELU_N1_TO_1": (None, "relu_n1_to_1", None),
}
SHAPES = [(3, 20), (2, 5, 12), (1, 6, 7, 8), (2, 3, 4, 5)]  # 2-D, 3-D (batch 2), 4-D batch 1 and 2


def _quant(rng, name):
    si, zi = float(rng.uniform(0.004, 0.15)), int(rng.integers(-90, 90))
    fixed = UNARY[name][2]
    so, zo = (si, zi) if fixed == "same" else fixed or (float(rng.uniform(0.004, 0.1)), int(rng.integers(-90, 90)))
    return si, zi, so, zo


def _unary_model(name, shape, si, zi, so, zo):
    opts = UNARY[name][0]
    op = "LEAKY_RELU" if name.startswith("LEAKY_RELU") else name
    return build_tflite([q("x", shape, si, zi), q("y", shape, so, zo)],
                        [dict(op=op, inputs=[0], outputs=[1], options=opts)], [0], [1])


def _runtime(name: str):
    """RELU_N1_TO_1 is not in TFLM: LiteRT's reference kernels are its reference."""
    return "litert" if name == "RELU_N1_TO_1" else "tflm"


def _litert(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for s in x:
        it.set_tensor(i, s)
        it.invoke()
        out.append(it.get_tensor(o).copy())
    return np.stack(out)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_tflite_table_equals_the_reference_on_every_input(name):
    """The ported integer algorithm, all 256 inputs, 8 random quantizations."""
    from op_check import tflm
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    x = tables.INPUTS.astype(np.int8).reshape(1, 1, 256)
    for _ in range(8):
        si, zi, so, zo = _quant(rng, name)
        model = _unary_model(name, (1, 256), si, zi, so, zo)
        want = (_litert(model, x) if _runtime(name) == "litert" else tflm(model, [x])).reshape(256)
        alpha = (UNARY[name][0] or (None, {}))[1].get("Alpha", 0.2)
        got = tables.tflite_table(UNARY[name][1], si, zi, so, zo, {"alpha": alpha})
        close(got, want)


@pytest.mark.toolchain
@pytest.mark.parametrize("k,name", list(enumerate(sorted(UNARY))))
def test_tflite_int8_model_vs_reference_and_host_c(k, name):
    """100 random inputs: the interpreter equals TFLM (LiteRT), the host C equals the interpreter."""
    rng = np.random.default_rng(10 + k)
    shape = SHAPES[k % len(SHAPES)]
    si, zi, so, zo = _quant(rng, name)
    model = _unary_model(name, shape, si, zi, so, zo)
    if _runtime(name) == "tflm":
        g, want = tflite_check(model, rng)
    else:
        from edgecomp.frontends.tflite import load_tflite
        from op_check import interp_samples
        g = load_tflite(model)
        x = rng.integers(-128, 128, (N_INPUTS,) + shape, dtype=np.int8)
        want = _litert(model, x)
        close(interp_samples(g, [x]), want)
        close(host_c(g, x), want)
    assert [n.op for n in g.nodes] == ["lut"]
    assert spread(want) > 10


def test_tflite_fixed_output_quantization_is_required():
    from edgecomp.errors import UnsupportedError
    from edgecomp.frontends.tflite import load_tflite
    with pytest.raises(UnsupportedError, match="LOGISTIC output"):
        load_tflite(_unary_model("LOGISTIC", (1, 8), 0.1, 0, 0.01, 0))


@pytest.mark.toolchain
@pytest.mark.parametrize("alpha_shape", [(8,), (1, 1, 8), (6, 7, 8)])
def test_tflite_prelu_int8(alpha_shape):
    """PRELU with a per-channel alpha (Keras shared_axes) and a full [H, W, C] one."""
    rng = np.random.default_rng(len(alpha_shape))
    shape = (2, 6, 7, 8)
    alpha = rng.integers(-128, 128, alpha_shape, dtype=np.int8)
    model = build_tflite([q("x", shape, 0.04, -7), q("alpha", alpha_shape, 0.004, 11, data=alpha),
                          q("y", shape, 0.03, 5)], [dict(op="PRELU", inputs=[0, 1], outputs=[2])], [0], [2])
    g, want = tflite_check(model, rng)
    assert [n.op for n in g.nodes] == ["prelu"] and spread(want) > 50


@pytest.mark.toolchain
@pytest.mark.parametrize("shape", [(3, 20), (2, 4, 5, 6)])
def test_tflite_float_activations(shape):
    """float32 HARD_SWISH, LEAKY_RELU, PRELU, TANH, RELU6, LOGISTIC, RELU in a chain against TFLM."""
    rng = np.random.default_rng(5)
    alpha = rng.uniform(-0.5, 0.5, shape[-1:]).astype(np.float32)
    ops = ["HARD_SWISH", "LEAKY_RELU", "PRELU", "TANH", "RELU6", "LOGISTIC", "RELU"]
    ts = [f(f"t{i}", shape) for i in range(len(ops) + 1)] + [f("alpha", alpha.shape, data=alpha)]
    nodes = []
    for i, op in enumerate(ops):
        ins = [i, len(ops) + 1] if op == "PRELU" else [i]
        opts = ("LeakyReluOptions", {"Alpha": 0.3}) if op == "LEAKY_RELU" else None
        nodes.append(dict(op=op, inputs=ins, outputs=[i + 1], options=opts))
    model = build_tflite(ts, nodes, [0], [len(ops)])
    g, want = tflite_check(model, rng, n=20)
    assert {n.op for n in g.nodes} == {"unary", "clamp", "prelu"}


# -- ONNX ---------------------------------------------------------------------------------------------

ONNX_UNARY = [("Sigmoid", None), ("Tanh", None), ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}), ("HardSwish", None),
              ("LeakyRelu", {"alpha": 0.15}), ("Gelu", None), ("Gelu", {"approximate": "tanh"}), ("Erf", None),
              ("Relu", None), ("PRelu", None)]
ONNX_SHAPES = [(1, 4, 5, 6), (2, 3, 10), (2, 12), (2, 3, 4, 5)]


def _onnx_case(k, op, shape, rng):
    """PRelu's per-channel slopes ([C, 1, 1] as PyTorch exports them, [C, 1] for 3-D, [1, C] for 2-D)."""
    consts = ()
    if op == "PRelu":
        c = shape[1]
        consts = (rng.uniform(-0.6, 0.6, (c, 1, 1) if len(shape) == 4 else (c, 1) if len(shape) == 3 else (1, c)),)
    return consts


def _save(model, tmp: Path) -> Path:
    p = tmp / "m.onnx"
    onnx.save(model, str(p))
    return p


@pytest.mark.toolchain
@pytest.mark.parametrize("k,op,attrs", [(k, op, a) for k, (op, a) in enumerate(ONNX_UNARY)])
def test_onnx_int8_qdq_within_one_lsb_and_host_c(tmp_path, k, op, attrs):
    """x -> Q -> DQ -> op -> Q -> DQ: one lut (PRelu: prelu; Relu: the int8 clamp and a requantize), within 1 LSB of ONNX
    Runtime on 100 inputs; the host C equals the interpreter."""
    rng = np.random.default_rng(20 + k)
    shape = ONNX_SHAPES[k % len(ONNX_SHAPES)]
    so, zo = float(rng.uniform(0.008, 0.03)), int(rng.integers(-40, 40))
    m = qdq_graph(op, shape, 0.03, -12, so, zo, consts=_onnx_case(k, op, shape, rng), attrs=attrs)
    g = from_onnx(_save(m, tmp_path))
    assert [n.op for n in g.nodes] == {"PRelu": ["prelu"], "Relu": ["clamp", "quantize"]}.get(op, ["lut"])
    x = rng.uniform(-4, 4, (N_INPUTS,) + shape).astype(np.float32)
    want = quantized(ort_run(m, x), so, zo)
    xin = ir_input(g, x)
    got = interp.run(g, xin)[g.outputs[0]]
    close(onnx_out(got, shape), want, lsb=1)
    assert spread(want) > 20
    close(host_c(g, xin.reshape((-1,) + tuple(g.tensors[g.inputs[0]].shape))).reshape(got.shape), got)


def test_onnx_silu_becomes_one_table(tmp_path):
    """x * sigmoid(x) as ONNX Runtime quantizes it (Sigmoid and Mul, each in its QDQ pair): one table after
    fold_luts, equal to the unfolded graph's integers and within 1 LSB of ONNX Runtime."""
    rng = np.random.default_rng(3)
    shape = (1, 4, 5, 6)
    h = onnx.helper
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             h.make_node("Sigmoid", ["xd"], ["sg"]), h.make_node("QuantizeLinear", ["sg", "s2", "z2"], ["sq"]),
             h.make_node("DequantizeLinear", ["sq", "s2", "z2"], ["sd"]), h.make_node("Mul", ["xd", "sd"], ["m"]),
             h.make_node("QuantizeLinear", ["m", "s", "z"], ["mq"]), h.make_node("DequantizeLinear", ["mq", "s", "z"], ["y"])]
    inits = [onnx.numpy_helper.from_array(np.asarray(v, t), n) for n, v, t in
             (("s", 0.03, np.float32), ("z", -10, np.int8), ("s2", 1 / 255, np.float32), ("z2", -128, np.int8))]
    gr = h.make_graph(nodes, "silu", [h.make_tensor_value_info("x", 1, list(shape))],
                      [h.make_tensor_value_info("y", 1, list(shape))], inits)
    m = h.make_model(gr, opset_imports=[h.make_opsetid("", 20)])
    g = from_onnx(_save(m, tmp_path))
    assert [n.op for n in g.nodes] == ["lut", "mul"]
    low = lower(g, CodegenOptions())
    assert [n.op for n in low.nodes] == ["lut"]
    x = rng.uniform(-4, 3, (N_INPUTS,) + shape).astype(np.float32)
    xin = ir_input(g, x)
    got = interp.run(g, xin)[g.outputs[0]]
    close(interp.run(low, xin)[low.outputs[0]], got)
    close(onnx_out(got, shape), quantized(ort_run(m, x), 0.03, -10), lsb=1)


@pytest.mark.toolchain
def test_onnx_float_activations_within_1e5(tmp_path):
    """float32: each op's interpreter within 1e-5 of ONNX Runtime, and a chain of all of them through the
    host C build."""
    rng = np.random.default_rng(4)
    shape = (1, 4, 5, 6)
    x = rng.uniform(-4, 4, (8,) + shape).astype(np.float32)
    chain = []
    for k, (op, attrs) in enumerate(ONNX_UNARY):
        cs = _onnx_case(k, op, shape, rng)
        m = float_graph(op, shape, consts=cs, attrs=attrs)
        g = from_onnx(_save(m, tmp_path))
        got = onnx_out(interp.run(g, ir_input(g, x))[g.outputs[0]], shape)
        np.testing.assert_allclose(got, ort_run(m, x), rtol=1e-5, atol=1e-5, err_msg=op)
        chain.append((op, attrs, cs))
    m = qdq_chain_float(chain, shape)
    g = from_onnx(_save(m, tmp_path))
    xin = ir_input(g, x)
    got = interp.run(g, xin)[g.outputs[0]]
    np.testing.assert_allclose(onnx_out(got, shape), ort_run(m, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host_c(g, xin[:, None]).reshape(got.shape), got, rtol=1e-5, atol=1e-5)


def qdq_chain_float(chain, shape):
    """x -> op1 -> op2 -> ... -> y in float."""
    h = onnx.helper
    nodes, inits, prev = [], [], "x"
    for k, (op, a, cs) in enumerate(chain):
        names = [f"c{k}"] if cs else []
        inits += [onnx.numpy_helper.from_array(np.asarray(cs[0], np.float32), f"c{k}")] if cs else []
        nodes.append(h.make_node(op, [prev] + names, ["y" if k == len(chain) - 1 else f"t{k}"], **(a or {})))
        prev = f"t{k}"
    gr = h.make_graph(nodes, "chain", [h.make_tensor_value_info("x", 1, list(shape))],
                      [h.make_tensor_value_info("y", 1, list(shape))], inits)
    return h.make_model(gr, opset_imports=[h.make_opsetid("", 20)])


# -- table composition -------------------------------------------------------------------------------

@pytest.mark.toolchain
def test_luts_compose_and_a_clamp_only_lut_joins_the_conv(tflite_builder):
    """LOGISTIC after HARD_SWISH: one table (the same integers); RELU6 right after a conv, in the conv's
    quantization: the conv's clamp range (exact)."""
    rng = np.random.default_rng(6)
    shape = (1, 5, 5, 4)
    w = rng.integers(-127, 128, (4, 1, 1, 4), dtype=np.int8)
    ts = [q("x", shape, 0.05, 3), dict(name="w", shape=[4, 1, 1, 4], dtype="int8", scale=[0.01] * 4,
                                       zero_point=[0] * 4, data=w), q("c", shape, 0.06, -20), q("r6", shape, 0.06, -20),
          q("hs", shape, 0.03, -30), q("y", shape, 1 / 256, -128)]
    conv = ("Conv2DOptions", {"Padding": 1, "StrideH": 1, "StrideW": 1, "FusedActivationFunction": 0})
    ops = [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2], options=conv), dict(op="RELU6", inputs=[2], outputs=[3]),
           dict(op="HARD_SWISH", inputs=[3], outputs=[4]), dict(op="LOGISTIC", inputs=[4], outputs=[5])]
    model = build_tflite(ts, ops, [0], [5])
    g, want = tflite_check(model, rng)
    low = lower(g, CodegenOptions())
    assert [n.op for n in low.nodes] == ["conv2d", "lut"]
    assert low.nodes[0].attrs["act"] == (-20, 80)  # RELU6 as the conv's clamp: [zp, zp + 6 / 0.06]
    x = rng.integers(-128, 128, (20,) + shape[1:], dtype=np.int8)
    close(interp.run(low, x)[low.outputs[0]], interp.run(g, x)[g.outputs[0]])


# -- firmware -----------------------------------------------------------------------------------------

@pytest.mark.qemu
def test_activations_under_qemu_equal_tflm(tmp_path):
    """HARD_SWISH, LEAKY_RELU, PRELU, TANH, LOGISTIC as a cortex-m4 firmware under QEMU: TFLM's bytes."""
    from edgecomp import api
    from edgecomp.reference import tflm_run
    rng = np.random.default_rng(7)
    shape = (1, 6, 6, 8)
    alpha = rng.integers(-128, 128, (1, 1, 8), dtype=np.int8)
    ts = [q("x", shape, 0.05, 3), q("a", shape, 0.04, -40), q("b", shape, 0.05, 10), q("c", shape, 0.04, -2),
          q("d", shape, 1 / 128, 0), q("y", shape, 1 / 256, -128), q("alpha", (1, 1, 8), 0.005, 0, data=alpha)]
    ops = [dict(op="HARD_SWISH", inputs=[0], outputs=[1]),
           dict(op="LEAKY_RELU", inputs=[1], outputs=[2], options=("LeakyReluOptions", {"Alpha": 0.1})),
           dict(op="PRELU", inputs=[2, 6], outputs=[3]), dict(op="TANH", inputs=[3], outputs=[4]),
           dict(op="LOGISTIC", inputs=[4], outputs=[5])]
    path = tmp_path / "act.tflite"
    path.write_bytes(build_tflite(ts, ops, [0], [5]))
    x = rng.integers(-128, 128, (8,) + shape[1:], dtype=np.int8)
    api.compile_model(path, "cortex-m4", tmp_path / "b")
    got = api.run_bundle(tmp_path / "b", x, progress=False).outputs
    want = tflm_run(path, x)
    close(got.reshape(want.shape), want)
    assert spread(want) > 10

