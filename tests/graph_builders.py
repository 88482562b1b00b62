"""edgecomp IR graphs built by hand for the C and kernel tests: tensors (act_t, weights, bias) drawn
from one shared generator RNG (seed 42; the tests draw from it in collection order, so adding a draw
changes later graphs' weights), graph(), one small graph per op (conv_graph, fc_graph, ...) and
random_chain (a chain of conv / depthwise / pool layers from a list of specs)."""
from __future__ import annotations

import numpy as np

from edgecomp import ir

RNG = np.random.default_rng(42)


def act_t(name, shape, dtype, scale=0.05, zp=3):
    return ir.Tensor(name, shape, dtype, ir.QuantParams([scale], [zp]) if dtype == "int8" else None)


def weights(name, shape, dtype, channels_axis=0):
    if dtype == "int8":
        n = shape[channels_axis]
        return ir.Tensor(name, shape, "int8", ir.QuantParams(RNG.uniform(0.002, 0.01, n).astype(np.float32),
                                                             np.zeros(n, np.int32), axis=channels_axis),
                         data=RNG.integers(-127, 128, size=shape, dtype=np.int8))
    return ir.Tensor(name, shape, "float32", data=RNG.standard_normal(shape).astype(np.float32) * 0.3)


def bias(name, n, dtype):
    if dtype == "int8":
        return ir.Tensor(name, (n,), "int32", data=RNG.integers(-2000, 2000, size=n, dtype=np.int32))
    return ir.Tensor(name, (n,), "float32", data=RNG.standard_normal(n).astype(np.float32))


def act(kind, t: ir.Tensor):
    return ir.activation_range(kind, t.quant, t.dtype)


def graph(tensors: list[ir.Tensor], nodes: list[ir.Node], inputs, outputs, name="g") -> ir.Graph:
    g = ir.Graph(name, {t.name: t for t in tensors}, nodes, inputs, outputs, {"source": "test"})
    g.validate()
    return g


def conv_graph(dtype, op="conv2d"):
    x = act_t("x", (1, 7, 6, 3), dtype, 0.05, 3)
    stride, dil, pad = (2, 1), (1, 2), (1, 0, 2, 1)
    ho = ir.conv_output_size(7, 3, stride[0], dil[0], pad[0], pad[2])
    wo = ir.conv_output_size(6, 3, stride[1], dil[1], pad[1], pad[3])
    if op == "conv2d":
        w, oc, attrs = weights("w", (4, 3, 3, 3), dtype), 4, {}
    else:
        w, oc, attrs = weights("w", (1, 3, 3, 6), dtype, 3), 6, {"depth_multiplier": 2}
    y = act_t("y", (1, ho, wo, oc), dtype, 0.08, -5)
    attrs.update(stride=stride, dilation=dil, pad=pad, act=act("relu", y))
    return graph([x, w, bias("b", oc, dtype), y], [ir.Node("conv", op, ["x", "w", "b"], ["y"], attrs)], ["x"], ["y"])


def fc_graph(dtype):
    x = act_t("x", (1, 2, 3, 4), dtype)
    w = weights("w", (5, 24), dtype)
    y = act_t("y", (1, 5), dtype, 0.2, -1)
    return graph([x, w, bias("b", 5, dtype), y],
                 [ir.Node("fc", "fully_connected", ["x", "w", "b"], ["y"], {"act": act("relu6", y)})], ["x"], ["y"])


def add_graph(dtype):
    # b comes from a conv so the graph has one input; add(x, conv(x)) with different scales
    x = act_t("x", (1, 3, 4, 2), dtype, 0.05, 3)
    w = weights("w", (2, 1, 1, 2), dtype)
    c = act_t("c", (1, 3, 4, 2), dtype, 0.03, -7)
    y = act_t("y", (1, 3, 4, 2), dtype, 0.06, 2)
    nodes = [ir.Node("pw", "conv2d", ["x", "w"], ["c"], {"stride": (1, 1), "dilation": (1, 1), "pad": (0, 0, 0, 0),
                                                          "act": act(None, c)}),
             ir.Node("sum", "add", ["c", "x"], ["y"], {"act": act("relu", y)})]
    return graph([x, w, c, y], nodes, ["x"], ["y"])


def pool_graph(dtype, op):
    x = act_t("x", (1, 7, 5, 3), dtype)
    ho = ir.conv_output_size(7, 3, 2, 1, 1, 1)
    wo = ir.conv_output_size(5, 2, 2, 1, 0, 1)
    y = act_t("y", (1, ho, wo, 3), dtype)
    return graph([x, y], [ir.Node("pool", op, ["x"], ["y"], {"kernel": (3, 2), "stride": (2, 2), "pad": (1, 0, 1, 1),
                                                            "act": act(None, y)})], ["x"], ["y"])


def softmax_graph(dtype):
    x = act_t("x", (1, 3, 10), dtype, 0.1, 4)
    y = act_t("y", (1, 3, 10), dtype, 1 / 256, -128)
    return graph([x, y], [ir.Node("sm", "softmax", ["x"], ["y"], {"beta": 0.7})], ["x"], ["y"])


def reshape_concat_graph(dtype):
    x = act_t("x", (1, 4, 6), dtype)
    r = act_t("r", (1, 2, 2, 6), dtype)
    w = weights("w", (3, 1, 1, 6), dtype)
    c = act_t("c", (1, 2, 2, 3), dtype)  # same quantization as the concat output
    y = act_t("y", (1, 2, 2, 9), dtype)
    z = act_t("z", (1, 4, 2, 9), dtype)
    conv = {"stride": (1, 1), "dilation": (1, 1), "pad": (0, 0, 0, 0), "act": act(None, c)}
    nodes = [ir.Node("flat", "reshape", ["x"], ["r"], {"shape": (1, 2, 2, 6)}),
             ir.Node("pw", "conv2d", ["r", "w"], ["c"], conv),
             ir.Node("cat_c", "concat", ["r", "c"], ["y"], {"axis": 3}),
             ir.Node("cat_h", "concat", ["y", "y"], ["z"], {"axis": 1})]
    return graph([x, r, w, c, y, z], nodes, ["x"], ["z"])


def clamp_graph(dtype):
    x = act_t("x", (1, 17), dtype)
    y = act_t("y", (1, 17), dtype)
    rng = (-20, 30) if dtype == "int8" else (-0.5, 1.25)
    return graph([x, y], [ir.Node("clip", "clamp", ["x"], ["y"], {"act": rng})], ["x"], ["y"])


def quant_graph():
    """float -> int8 -> requantized int8 -> float."""
    x = act_t("x", (1, 40), "float32")
    q = act_t("q", (1, 40), "int8", 0.02, -3)
    r = act_t("r", (1, 40), "int8", 0.05, 10)
    y = act_t("y", (1, 40), "float32")
    nodes = [ir.Node("quant", "quantize", ["x"], ["q"]), ir.Node("requant", "quantize", ["q"], ["r"]),
             ir.Node("dequant", "dequantize", ["r"], ["y"])]
    return graph([x, q, r, y], nodes, ["x"], ["y"])


def chain_graph(dtype):
    """conv -> depthwise -> strided conv -> pointwise: the in-place planner at work."""
    x = act_t("x", (1, 9, 8, 3), dtype)
    ts, nodes = [x], []
    cur, shape = "x", (9, 8, 3)
    for i, (op, k, s, p, oc) in enumerate([("conv2d", 3, 1, 1, 8), ("depthwise_conv2d", 3, 1, 1, 8),
                                           ("conv2d", 3, 2, 1, 8), ("conv2d", 1, 1, 0, 16)]):
        ho, wo = ir.conv_output_size(shape[0], k, s, 1, p, p), ir.conv_output_size(shape[1], k, s, 1, p, p)
        w = weights(f"w{i}", (oc, k, k, shape[2]) if op == "conv2d" else (1, k, k, oc), dtype,
                    0 if op == "conv2d" else 3)
        y = act_t(f"t{i}", (1, ho, wo, oc), dtype, 0.1 + 0.05 * i, i - 2)
        attrs = {"stride": (s, s), "dilation": (1, 1), "pad": (p, p, p, p), "act": act("relu", y)}
        if op != "conv2d":
            attrs["depth_multiplier"] = 1
        ts += [w, bias(f"b{i}", oc, dtype), y]
        nodes.append(ir.Node(f"l{i}", op, [cur, w.name, f"b{i}"], [y.name], attrs))
        cur, shape = y.name, (ho, wo, oc)
    return graph(ts, nodes, ["x"], [cur])


def residual_graph(dtype):
    """x -> conv1 -> conv2 (+ x): the add is fused into conv2 and written over x."""
    x = act_t("x", (1, 6, 5, 4), dtype, 0.05, 1)
    ts = [x]
    nodes = []
    cur = "x"
    for i in range(2):
        y = act_t(f"c{i}", (1, 6, 5, 4), dtype, 0.07 + 0.02 * i, -3 + i)
        ts += [weights(f"w{i}", (4, 3, 3, 4), dtype), bias(f"b{i}", 4, dtype), y]
        nodes.append(ir.Node(f"conv{i}", "conv2d", [cur, f"w{i}", f"b{i}"], [y.name],
                             {"stride": (1, 1), "dilation": (1, 1), "pad": (1, 1, 1, 1),
                              "act": act("relu" if i == 0 else None, y)}))
        cur = y.name
    out = act_t("y", (1, 6, 5, 4), dtype, 0.09, -1)
    ts.append(out)
    nodes.append(ir.Node("res", "add", ["x", "c1"], ["y"], {"act": act("relu", out)}))
    return graph(ts, nodes, ["x"], ["y"])


def residual_self_graph(dtype):
    """y = relu(conv3x3(x) + x): the skip tensor is the conv's own input (in place at most d <= 0)."""
    x = act_t("x", (1, 7, 5, 4), dtype, 0.05, 1)
    c = act_t("c", (1, 7, 5, 4), dtype, 0.07, -3)
    y = act_t("y", (1, 7, 5, 4), dtype, 0.09, -1)
    conv = {"stride": (1, 1), "dilation": (1, 1), "pad": (1, 1, 1, 1), "act": act(None, c)}
    nodes = [ir.Node("conv", "conv2d", ["x", "w", "b"], ["c"], conv),
             ir.Node("res", "add", ["c", "x"], ["y"], {"act": act("relu", y)})]
    return graph([x, weights("w", (4, 3, 3, 4), dtype), bias("b", 4, dtype), c, y], nodes, ["x"], ["y"])


def random_chain(specs, h, w, c, dtype="int8"):
    """A chain of (op, kernel, stride, pad, dilation, out_channels) layers, skipping ones that do not fit."""
    x = act_t("x", (1, h, w, c), dtype)
    ts, nodes, cur, shape = [x], [], "x", (h, w, c)
    for i, (op, k, s, p, d, oc) in enumerate(specs):
        eff = (k - 1) * d + 1
        if shape[0] + 2 * p < eff or shape[1] + 2 * p < eff or (op.endswith("pool") and p >= k):
            continue
        ho, wo = ir.conv_output_size(shape[0], k, s, d, p, p), ir.conv_output_size(shape[1], k, s, d, p, p)
        oc = oc if op == "conv2d" else shape[2]
        y = act_t(f"t{i}", (1, ho, wo, oc), dtype, 0.05 + 0.02 * (i % 3), (i % 5) - 2)
        attrs = {"stride": (s, s), "pad": (p, p, p, p), "act": act("relu" if i % 2 else None, y)}
        if op.endswith("pool"):
            y = act_t(f"t{i}", (1, ho, wo, oc), dtype, ts[-1].quant.scale[0] if dtype == "int8" else 0,
                      int(ts[-1].quant.zero_point[0]) if dtype == "int8" else 0)
            attrs.update(kernel=(k, k), act=act(None, y))
            nodes.append(ir.Node(f"l{i}", op + "2d", [cur], [y.name], attrs))
            ts.append(y)
        else:
            w_ = weights(f"w{i}", (oc, k, k, shape[2]) if op == "conv2d" else (1, k, k, oc), dtype,
                         0 if op == "conv2d" else 3)
            attrs["dilation"] = (d, d)
            if op != "conv2d":
                attrs["depth_multiplier"] = 1
            ts += [w_, bias(f"b{i}", oc, dtype), y]
            nodes.append(ir.Node(f"l{i}", op, [cur, w_.name, f"b{i}"], [y.name], attrs))
        cur, shape = y.name, (ho, wo, oc)
    if not nodes:
        return None
    return graph(ts, nodes, ["x"], [cur])
