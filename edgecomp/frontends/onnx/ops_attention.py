"""MatMul of rank >= 3 or of two activations (IR ``batch_matmul``) and LayerNormalization (IR
``layer_norm``): axis ops that read their data in ONNX order (:func:`~.layout.onnx_order`).

A MatMul of an [N, K] activation and a constant [K, O] stays a fully connected layer
(``ops_conv.lower_gemm``); every other MatMul (3-D / 4-D, the second operand an activation or a
constant, the batch axes broadcast by numpy's rule) is a ``batch_matmul`` of both operands in
ONNX order, its output in ONNX order.  In a quantized (QDQ) graph a MatMul of two activations
folds into the int8 batch_matmul (``passes/qdq.py``); LayerNormalization (and a MatMul with a
constant operand of rank > 2) keeps float inputs and outputs, and the compile output says so.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedError
from .context import Ctx, like_input, out_tensor, shape_of
from .layout import onnx_axis, onnx_order
from .ops_conv import lower_gemm
from .registry import onnx_op


def _matmul_shape(a: tuple, b: tuple, where: str) -> tuple[int, ...]:
    if len(a) < 2 or len(b) < 2:
        raise UnsupportedError(f"MatMul of a {len(a)}-D and a {len(b)}-D tensor", where=where,
                               fix="Give both operands at least 2 axes")
    if a[-1] != b[-2]:
        raise UnsupportedError(f"MatMul of shapes {list(a)} and {list(b)}", where=where, fix="Check the model")
    r = max(len(a), len(b))
    pa, pb = (1,) * (r - len(a)) + tuple(a), (1,) * (r - len(b)) + tuple(b)
    batch = []
    for x, y in zip(pa[:-2], pb[:-2]):
        if x != y and 1 not in (x, y):
            raise UnsupportedError(f"MatMul batch axes {list(a[:-2])} and {list(b[:-2])} do not broadcast",
                                   where=where, fix="Check the model")
        batch.append(max(x, y))
    return tuple(batch) + (a[-2], b[-1])


@onnx_op("MatMul")
def lower_matmul(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    w = n.input[1]
    if w in c.consts and len(xs) == 2 and c.consts[w].ndim == 2:
        return lower_gemm(c, n, a, x, xs, where)
    ws = tuple(shape_of(c, w))
    os_ = _matmul_shape(tuple(xs), ws, where)
    if w in c.qconsts:
        raise UnsupportedError("MatMul of rank > 2 with a quantized constant operand", where=where,
                               fix="Keep this MatMul's weights float32 (exclude it from quantization)")
    if w in c.consts:
        b = c.const(f"{n.output[0]}_b", np.asarray(c.consts[w], np.float32))
    else:
        b = onnx_order(c, c.name(w), ws)
        if len(ws) != len(os_) or len(xs) != len(os_):
            raise UnsupportedError(f"MatMul of activations of shapes {list(xs)} and {list(ws)}", where=where,
                                   fix="Give both activation operands the same rank")
    if len(xs) != len(os_):
        raise UnsupportedError(f"MatMul of a {len(xs)}-D activation giving a {len(os_)}-D output", where=where,
                               fix="Give the activation operand the output's rank")
    if len(os_) - 2 > 4:
        raise UnsupportedError(f"MatMul with {len(os_) - 2} batch axes", where=where, fix="Use at most 6-D operands")
    xa = onnx_order(c, x, xs)
    o = out_tensor(c, n, os_, layout=None)
    c.add_node(n.name or f"{n.output[0]}_matmul", "batch_matmul", [xa, b], [o])


@onnx_op("LayerNormalization")
def lower_layer_norm(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    rank = len(xs)
    axis = int(a.get("axis", -1))
    if not -rank <= axis < rank:
        raise UnsupportedError(f"LayerNormalization axis {axis} for a {rank}-D tensor", where=where,
                               fix="Check the model")
    axis %= rank
    if axis == 0:
        raise UnsupportedError("LayerNormalization over the batch axis", where=where,
                               fix="Normalize over the axes after the batch (edgecomp runs one batch row at a time)")
    if a.get("stash_type", 1) != 1 or len(n.output) > 1 and any(n.output[1:]):
        raise UnsupportedError("LayerNormalization with mean / inverse std outputs or stash_type != 1", where=where,
                               fix="Export for inference (one output)")
    count = math.prod(xs[axis:])
    ins = []
    for i, what in ((1, "scale"), (2, "bias")):
        if len(n.input) <= i or not n.input[i]:
            continue
        v = c.consts.get(n.input[i])
        if v is None:
            raise UnsupportedError(f"LayerNormalization {what} that is not a constant", where=where,
                                   fix="Export with constant weights")
        v = np.broadcast_to(np.asarray(v, np.float32), tuple(xs[axis:])).reshape(-1)
        ins.append(c.const(f"{n.output[0]}_{what}", np.ascontiguousarray(v)))
    if axis == rank - 1 and onnx_axis(c, x, xs, axis) == len(c.g.tensors[x].shape) - 1:
        o = like_input(c, n, x, xs)  # the normalized axis is innermost in memory: any layout of the others
    else:
        x = onnx_order(c, x, xs)
        o = out_tensor(c, n, xs, layout=None)
    c.add_node(n.name or f"{n.output[0]}_layer_norm", "layer_norm", [x] + ins, [o], count=count,
               epsilon=float(a.get("epsilon", 1e-5)))
