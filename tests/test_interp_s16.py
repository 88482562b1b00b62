"""The reference interpreter on int16 ("16x8") graphs: edgecomp.interp_s16 computes what
ec_kernels_s16.c computes, to the bit.

* its requantization against exact integers (the rounding docs/internals.md documents and
  tests/test_int16.py checks the C against);
* hand-built int16 graphs through every int16 kernel (Q31 and shift-only parameters, saturation,
  ties, NaN and infinities at the input) built for the host: C == interpreter;
* a conv + add + relu block quantized by ONNX Runtime, and its Q15 power-of-two rewrite: C ==
  interpreter, and both within 1 LSB of ORT's QDQ reference;
* int16 nodes the C does not run are refused with UnsupportedError.
(The int16 layer zoo and the digits CNN: tests/test_int16.py.)
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecomp import interp, interp_s16, ir
from edgecomp.errors import UnsupportedError

sys.path.insert(0, str(Path(__file__).parent))
from c_harness import run_c  # noqa: E402  (the host harness)


# --------------------------------------------------------------------------- requantization
def _exact(acc: int, m: int, shift: int) -> int:
    """acc * m / 2^(31 - shift) rounded to nearest, ties to even, saturated to int32 (Python integers)."""
    n = 31 - shift
    acc = max(min(acc, 1 << 47), -(1 << 47)) if n >= 16 else max(min(acc, 2**31 - 1), -2**31)
    x = acc * m
    q, r = x >> n, x & ((1 << n) - 1)
    q += 1 if r > (1 << (n - 1)) or (r == (1 << (n - 1)) and q & 1) else 0
    return max(min(q, 2**31 - 1), -2**31)


def test_requantization_is_the_documented_rounding():
    rng = np.random.default_rng(1)
    cases = []
    for shift in range(-31, 31):  # quantize_multiplier's shifts (below -31 it flushes the multiplier to 0)
        for m in (1 << 30, (1 << 31) - 1, 1518500250, int(rng.integers(1 << 30, 1 << 31))):
            accs = [0, 1, -1, 2, -2, 3, -3, (1 << 40) + 12345, -(1 << 40) - 12345, 1 << 47, -(1 << 47), (1 << 50),
                    -(1 << 50), 2**31 - 1, -2**31, *rng.integers(-(1 << 34), 1 << 34, 6),
                    *rng.integers(-(1 << 20), 1 << 20, 6)]
            if shift <= 0:  # exact ties of the shift-only path: odd and even multiples of 2^-k
                accs += [(int(v) << (1 - shift)) + (1 << -shift) for v in (-3, -2, 2, 3)]
            cases += [(int(a), m, shift) for a in accs]
    acc, m, s = (np.array(c, dtype=object) for c in zip(*cases))
    got = interp_s16.ec_requantize_acc_s16(acc.astype(np.int64), m.astype(np.int64), s.astype(np.int64))
    want = np.array([_exact(*c) for c in cases], dtype=np.int64)
    np.testing.assert_array_equal(got, want)
    pow2 = m == 1 << 30
    shifted = interp_s16.ec_shift_acc_s16(acc[pow2].astype(np.int64), s[pow2].astype(np.int64))
    np.testing.assert_array_equal(shifted, want[pow2])  # the shift-only path gives the same numbers
    # the documented cut-off, as the C: a right shift beyond 62 gives 0
    assert not interp_s16.ec_requantize_acc_s16(1 << 47, (1 << 31) - 1, -32).any()
    assert not interp_s16.ec_shift_acc_s16(-(1 << 47), -62).any()


# --------------------------------------------------------------------------- hand-built int16 graphs
def _scale(v: float, pow2: bool) -> float:
    return 2.0 ** round(math.log2(v)) if pow2 else v


def _s16(name, shape, scale, pow2):
    return ir.Tensor(name, shape, "int16", ir.QuantParams([_scale(scale, pow2)], [0]))


def _w8(name, shape, axis, rng, pow2):
    n = shape[axis]
    scales = np.array([_scale(v, pow2) for v in rng.uniform(0.004, 0.03, n)], np.float32)
    return ir.Tensor(name, shape, "int8", ir.QuantParams(scales, np.zeros(n, np.int32), axis=axis),
                     data=rng.integers(-127, 128, size=shape, dtype=np.int8))


def _b32(name, n, rng):
    return ir.Tensor(name, (n,), "int32", data=rng.integers(-400_000, 400_000, size=n, dtype=np.int32))


class _Builder:
    """An int16 graph x (float) -> quantize -> q and layers on it, each branch flattened into one concat."""

    def __init__(self, shape, pow2: bool, seed: int):
        self.pow2, self.rng = pow2, np.random.default_rng(seed)
        self.tensors = [ir.Tensor("x", shape, "float32"), _s16("q", shape, 1 / 3000, pow2)]
        self.nodes = [ir.Node("quant", "quantize", ["x"], ["q"])]
        self.flat: list[str] = []

    def t(self, name: str) -> ir.Tensor:
        return next(t for t in self.tensors if t.name == name)

    def layer(self, name, op, inputs, shape, scale, attrs=None, weights=None, flatten=True) -> str:
        """Add int16 tensor ``name`` = op(inputs) (weights: (shape, channel axis) of an int8 filter + bias)."""
        ins = list(inputs)
        if weights is not None:
            wshape, axis = weights
            self.tensors += [_w8(f"{name}_w", wshape, axis, self.rng, self.pow2),
                             _b32(f"{name}_b", wshape[axis], self.rng)]
            ins += [f"{name}_w", f"{name}_b"]
        self.tensors.append(_s16(name, shape, scale, self.pow2))
        self.nodes.append(ir.Node(name, op, ins, [name], dict(attrs or {})))
        if flatten:
            size = int(np.prod(shape))
            self.tensors.append(_s16(f"{name}_flat", (1, size), scale, self.pow2))
            self.nodes.append(ir.Node(f"{name}_flat", "reshape", [name], [f"{name}_flat"], {"shape": (1, size)}))
            self.flat.append(f"{name}_flat")
        return name

    def graph(self, name: str) -> ir.Graph:
        size = sum(self.t(f).shape[1] for f in self.flat)
        self.tensors += [_s16("cat", (1, size), 1 / 1000, self.pow2), ir.Tensor("y", (1, size), "float32")]
        self.nodes += [ir.Node("cat", "concat", self.flat, ["cat"], {"axis": 1}),
                       ir.Node("dequant", "dequantize", ["cat"], ["y"])]
        g = ir.Graph(name, {t.name: t for t in self.tensors}, self.nodes, ["x"], ["y"], {"source": "test"})
        g.validate()
        return g


def int16_graph(pow2: bool) -> ir.Graph:
    """Every int16 kernel on the same input, side by side (concat moves the bytes, so the output holds
    each layer's own values): conv (strided, dilated, asymmetric padding, relu), depthwise (multiplier
    2), fully connected (clipped), max and average pools, add (three scales, relu), requantize to a
    finer scale (a left shift with power-of-two scales) and to a coarser one, clamp."""
    b = _Builder((1, 9, 8, 4), pow2, seed=3)
    relu = (0, 32767)  # ir.activation_range("relu", ...) of a symmetric int16 tensor
    oh, ow = ir.conv_output_size(9, 3, 2, 1, 1, 2), ir.conv_output_size(8, 3, 1, 2, 0, 1)
    b.layer("conv", "conv2d", ["q"], (1, oh, ow, 5), 1 / 1500, {"stride": (2, 1), "dilation": (1, 2),
            "pad": (1, 0, 2, 1), "act": relu}, weights=((5, 3, 3, 4), 0))
    b.layer("dw", "depthwise_conv2d", ["q"], (1, 5, 4, 8), 1 / 700, {"stride": (2, 2), "dilation": (1, 1),
            "pad": (1, 1, 1, 1), "depth_multiplier": 2, "act": None}, weights=((1, 3, 3, 8), 3))
    b.layer("q_flat", "reshape", ["q"], (1, 288), 1 / 3000, {"shape": (1, 288)}, flatten=False)
    b.layer("fc", "fully_connected", ["q_flat"], (1, 6), 1 / 300, {"act": (-20000, 15000)}, weights=((6, 288), 0))
    b.layer("maxp", "max_pool2d", ["q"], (1, 5, 4, 4), 1 / 3000, {"kernel": (3, 2), "stride": (2, 2),
            "pad": (1, 0, 1, 1), "act": None})
    b.layer("avgp", "avg_pool2d", ["q"], (1, 5, 4, 4), 1 / 4100, {"kernel": (3, 3), "stride": (2, 2),
            "pad": (1, 1, 1, 1), "act": None})
    b.layer("pw", "conv2d", ["q"], (1, 9, 8, 4), 1 / 900, {"stride": (1, 1), "dilation": (1, 1), "pad": (0, 0, 0, 0),
            "act": None}, weights=((4, 1, 1, 4), 0))
    b.layer("add", "add", ["pw", "q"], (1, 9, 8, 4), 1 / 2200, {"act": relu})
    b.layer("requant", "quantize", ["add"], (1, 9, 8, 4), 1 / 5000)
    b.layer("coarse", "quantize", ["q"], (1, 9, 8, 4), 1 / 760)  # a right shift by 2: exact ties with 2^-n scales
    b.layer("clip", "clamp", ["q"], (1, 9, 8, 4), 1 / 3000, {"act": (-20000, 25000)})
    return b.graph("int16_layers")


def _inputs(g: ir.Graph, n: int = 6) -> np.ndarray:
    """Normal samples plus exact quantization ties, values beyond int16 and NaN / +-inf."""
    t, s = g.tensors["x"], float(g.tensors["q"].quant.scale[0])
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((n,) + t.shape[1:]) * 2.5).astype(np.float32)
    flat = x.reshape(-1)
    k = rng.integers(-4000, 4000, 40)
    flat[:40] = ((k + 0.5) * s).astype(np.float32)  # ties (exact with a power-of-two scale)
    flat[40:44] = [1e6, -1e6, np.inf, -np.inf]
    flat[44] = np.nan
    return x


@pytest.mark.toolchain
@pytest.mark.parametrize("pow2", [False, True], ids=["q31", "shift_only"])
def test_int16_layers_c_equals_the_interpreter(tmp_path, pow2):
    g = int16_graph(pow2)
    x = _inputs(g)
    got = run_c(g, x, tmp_path)
    env = interp.run(g, x, all_tensors=True)
    np.testing.assert_array_equal(got, env["y"])
    model_c = (tmp_path / "model.c").read_text()
    assert model_c.count("shift only") == (4 if pow2 else 0)  # conv, dw, fc, pw: the shift-only kernels ran
    for node in g.nodes[1:-2]:  # every int16 layer does real work: not constant, mostly not saturated
        v = env[node.outputs[0]].astype(np.int32)
        assert np.ptp(v) > 0 and np.mean(np.abs(v) < 32767) > 0.8, node.name


# --------------------------------------------------------------------------- an ORT-quantized block
@pytest.fixture(scope="module")
def block(tmp_path_factory):
    """relu(conv(relu(conv(x))) + x) quantized by ORT with int16 activations, and its Q15 rewrite."""
    import torch
    import torch.nn as nn

    from edgecomp.compress.fixedpoint import to_power_of_two
    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.frontends.torch import export_onnx

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(4, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.c2(torch.relu(self.c1(x))) + x)

    d = tmp_path_factory.mktemp("block16")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    f = export_onnx(Block().eval(), torch.zeros(1, 4, 6, 6), d / "block.onnx")
    q = quantize_onnx(f, rng.standard_normal((64, 4, 6, 6)).astype(np.float32), d / "block.int16.onnx",
                      progress=False, activations="int16")
    to_power_of_two(q, d / "block.q15.onnx")
    return {"int16": q, "q15": d / "block.q15.onnx", "x": rng.standard_normal((16, 4, 6, 6)).astype(np.float32)}


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", ["int16", "q15"])
def test_conv_add_relu_c_equals_interpreter_within_one_lsb_of_onnxruntime(tmp_path, block, kind):
    from edgecomp import api
    from edgecomp.demo import ort_outputs
    from edgecomp.frontends.onnx import from_onnx
    from onnx_graphs import assert_c_equals_interpreter, lsb, output_scale

    path, x = block[kind], block["x"]
    g = from_onnx(path)
    assert [n.op for n in g.nodes] == ["quantize", "conv2d", "conv2d", "add", "dequantize"]
    assert all(g.tensors[n.outputs[0]].dtype == "int16" for n in g.nodes[:-1])
    add_q = interp_s16._q(g, g.nodes[3])
    assert (add_q["output_multiplier"] == 0) == (kind == "q15")  # Q15: the add is a shift
    api.compile_model(path, "host", tmp_path / "b")
    got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False).outputs_float
    mine = assert_c_equals_interpreter(got, g, x)
    assert lsb(mine, ort_outputs(path, x), output_scale(path)) <= 1.0 + 1e-3


# --------------------------------------------------------------------------- refusals
def _refused(g: ir.Graph, match: str, node: str) -> None:
    with pytest.raises(UnsupportedError, match=match) as e:
        interp.run(g, np.zeros((1,) + g.tensors["x"].shape[1:], np.float32))
    assert e.value.where == f"node {node!r}" and e.value.fix
    assert e.value.what.startswith("int16") or "reference interpreter" in str(e.value)


def test_int16_nodes_the_c_does_not_run_are_refused():
    g = int16_graph(False)
    node = {n.name: i for i, n in enumerate(g.nodes)}
    sm = copy.deepcopy(g)  # softmax has no int16 kernel
    sm.nodes[node["clip"]] = ir.Node("clip", "softmax", ["q"], ["clip"], {"beta": 1.0})
    _refused(sm, "int16 softmax", "clip")
    mixed = copy.deepcopy(g)  # an int8 tensor among int16 ones
    mixed.tensors["pw"] = ir.Tensor("pw", (1, 9, 8, 4), "int8", ir.QuantParams([0.01], [0]))
    _refused(mixed, "int8 tensor 'pw'", "pw")
    zp = copy.deepcopy(g)
    zp.tensors["add"] = ir.Tensor("add", (1, 9, 8, 4), "int16", ir.QuantParams([1 / 2200], [5]))
    _refused(zp, "zero point", "add")
    res = copy.deepcopy(g)  # the C runs int16 adds on their own, never fused into the conv
    res.nodes[node["pw"]].attrs["residual"] = {"tensor": "q", "act": None}
    _refused(res, "residual add", "pw")
    big = copy.deepcopy(g)
    big.nodes[node["requant"]].attrs["q"] = {"multiplier": 1 << 30, "shift": 31}
    _refused(big, "shift out of range", "requant")
    pool = copy.deepcopy(g)
    pool.tensors["maxp"] = ir.Tensor("maxp", (1, 5, 4, 4), "int16", ir.QuantParams([1 / 600], [0]))
    _refused(pool, "max pool whose output quantization differs", "maxp")
    bcast = copy.deepcopy(g)
    bcast.nodes[node["add"]].inputs[1] = "fc"
    _refused(bcast, "broadcasting", "add")
