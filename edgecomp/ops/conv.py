"""conv2d (``groups`` too), depthwise_conv2d, transpose_conv2d and fully_connected: the interpreter's
semantics and their MACs.

int8: TFLM's reference kernels (input and filter offsets, int32 accumulation with the bias,
per-channel requantization); integer dot products in float64 BLAS are exact (partial sums
< 2^53).  float32: float64 sums stored as float32.  ``attrs["hybrid"]``: LiteRT's
dynamic-range kernel (the input quantized per sample).
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from ..im2col import conv_acc, pad, windows
from .common import fclamp, is_int, q_of, requant_out


def _bias(graph: ir.Graph, node: ir.Node):
    """The constant third input, if any (a fused residual's skip tensor may follow the inputs)."""
    if len(node.inputs) > 2 and node.inputs[2] and graph.tensors[node.inputs[2]].is_const:
        return graph.tensors[node.inputs[2]].data
    return None


def _finish_acc(graph: ir.Graph, node: ir.Node, acc: np.ndarray, out: ir.Tensor, quant: bool) -> np.ndarray:
    b = _bias(graph, node)
    if quant:
        acc = np.rint(acc).astype(np.int64)
        if b is not None:
            acc = acc + b.astype(np.int64)
        dtype = "int8" if node.attrs.get("residual") else out.dtype
        return requant_out(acc, q_of(graph, node), node.attrs.get("act"), dtype)
    if b is not None:
        acc = acc + b.astype(np.float64)
    return fclamp(acc, node.attrs.get("act"))


def conv_macs(graph: ir.Graph, node: ir.Node) -> int:
    w = graph.tensors[node.inputs[1]]
    out = graph.tensors[node.outputs[0]]
    return out.size * w.shape[1] * w.shape[2] * (w.shape[3] if node.op == "conv2d" else 1)


@ir.define_op("conv2d", layout="rows", macs=conv_macs)
@ir.define_op("depthwise_conv2d", layout="rows", macs=conv_macs)
def conv(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    w = graph.tensors[node.inputs[1]].data
    a = node.attrs
    oh, ow = out.shape[1], out.shape[2]
    quant = is_int(out)
    if quant:
        q = q_of(graph, node)
        xo = x.astype(np.float64) + q["input_offset"]
        wf = w.astype(np.float64) + q["filter_offset"]
    elif "hybrid" in a:
        return _hybrid_conv(graph, node, x, out)
    else:
        xo, wf = x.astype(np.float64), w.astype(np.float64)
    groups = int(a.get("groups", 1))
    if groups == 1:
        acc = conv_acc(xo, wf, node.op, a, (oh, ow))
    else:  # grouped: output channels [g*O/G, (g+1)*O/G) read input channels [g*I/G, (g+1)*I/G)
        ig, og = wf.shape[3], wf.shape[0] // groups
        acc = np.concatenate([conv_acc(xo[..., g * ig:(g + 1) * ig], wf[g * og:(g + 1) * og], node.op, a, (oh, ow))
                              for g in range(groups)], axis=3)
    return _finish_acc(graph, node, acc, out, quant)


def symmetric_quantize_floats(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """TFLite SymmetricQuantizeFloats of one sample: int8 values in [-127, 127] and the float scale."""
    rng = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    if rng == 0:
        return np.zeros(x.shape, np.int8), np.float32(1)
    inv = np.float32(127) / rng
    q = np.clip(nx.round_half_away(x.astype(np.float32) * inv), -127, 127).astype(np.int8)
    return q, np.float32(rng / np.float32(127))


def _hybrid_conv(graph: ir.Graph, node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    """LiteRT's hybrid conv: input quantized per sample, int8 GEMM, rescaled to float."""
    a = node.attrs
    w = graph.tensors[node.inputs[1]].data
    ws = np.float32(a["hybrid"]["weight_scale"])
    wq = np.rint(w.astype(np.float64) / float(ws)).reshape(w.shape[0], -1)
    b = _bias(graph, node)
    n, oh, ow = x.shape[0], out.shape[1], out.shape[2]
    ys = []
    for s in range(n):
        q, sf = symmetric_quantize_floats(x[s])
        cols = windows(pad(q[None].astype(np.float64), a["pad"], 0.0), (w.shape[1], w.shape[2]), a["stride"],
                       a.get("dilation", (1, 1)), (oh, ow))
        cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(oh * ow, -1)
        acc = (cols @ wq.T).astype(np.float32) * np.float32(sf * ws)
        if b is not None:
            acc = acc + b.astype(np.float32)
        ys.append(fclamp(acc, a.get("act")).reshape(oh, ow, -1))
    return np.stack(ys)


@ir.define_op("fully_connected", layout="matrix_rows",
              macs=lambda g, n: g.tensors[n.outputs[0]].size * g.tensors[n.inputs[1]].shape[1])
def fully_connected(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    w = graph.tensors[node.inputs[1]].data
    rows = x.reshape(-1, w.shape[1]).astype(np.float64)
    quant = is_int(out)
    wf = w.astype(np.float64)
    if quant:
        q = q_of(graph, node)
        rows = rows + q["input_offset"]
        wf = wf + q["filter_offset"]
    acc = rows @ wf.T
    return _finish_acc(graph, node, acc, out, quant).reshape((x.shape[0],) + out.shape[1:])


def transpose_conv_macs(graph: ir.Graph, node: ir.Node) -> int:
    """Every input value times every tap of every output channel (the scatter, padding included)."""
    x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    return x.size * w.shape[0] * w.shape[1] * w.shape[2]


@ir.define_op("transpose_conv2d", macs=transpose_conv_macs)
def transpose_conv(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Each input pixel scattered through the filter (w [O, KH, KW, I]) at ``stride`` and
    ``dilation``; the output is that scatter cropped at ``pad`` (top, left) to the output tensor's
    size (ONNX's output_padding: rows and columns the scatter does not reach hold the bias).
    int8: TFLM's TransposeConv (the input offset added, the filter symmetric, int32 sums, the conv
    requantization per output channel)."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    w = graph.tensors[node.inputs[1]].data.astype(np.float64)
    a = node.attrs
    (sh, sw), (dh, dw) = a["stride"], a.get("dilation", (1, 1))
    pt, pl = a["pad"][0], a["pad"][1]
    n, h, wd, _ = x.shape
    o, kh, kw, _ = w.shape
    oh, ow = out.shape[1], out.shape[2]
    quant = is_int(out)
    xo = x.astype(np.float64) + (q_of(graph, node)["input_offset"] if quant else 0.0)
    full = np.zeros((n, max((h - 1) * sh + (kh - 1) * dh + 1, pt + oh), max((wd - 1) * sw + (kw - 1) * dw + 1, pl + ow), o))
    for ky in range(kh):
        for kx in range(kw):
            full[:, ky * dh:ky * dh + (h - 1) * sh + 1:sh, kx * dw:kx * dw + (wd - 1) * sw + 1:sw] += xo @ w[:, ky, kx, :].T
    return _finish_acc(graph, node, full[:, pt:pt + oh, pl:pl + ow], out, quant)
