"""Elementwise ops: Relu and Clip (a clamp, fused into its producer by fuse_activations) and Softmax
(Add, Sub, Mul, ... are in ops_binary.py)."""
from __future__ import annotations

import math

from ...errors import UnsupportedError
from .context import Ctx, like_input, out_tensor, shape_of
from .layout import onnx_axis, onnx_order, to_layout
from .registry import onnx_op


@onnx_op("Relu", "Clip")
def lower_clamp(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    ins = list(n.input)
    op = n.op_type
    lo, hi = 0.0, math.inf
    if op == "Clip":
        lo = float(c.consts[ins[1]]) if len(ins) > 1 and ins[1] else float(a.get("min", -math.inf))
        hi = float(c.consts[ins[2]]) if len(ins) > 2 and ins[2] else float(a.get("max", math.inf))
    o = like_input(c, n, x, xs)
    c.add_node(n.name, "clamp", [x], [o], act=(lo, hi))


@onnx_op("Softmax")
def lower_softmax(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """Softmax along any axis: the IR softmax takes the axis of the input as it is laid out (the
    innermost axis runs the plain kernel, another one the strided kernel).  Before opset 13 the
    axis splits the tensor into a 2-D [outer, inner] whose rows are normalized."""
    rank = len(xs)
    axis = a.get("axis", -1 if c.opset >= 13 else 1)
    if not -rank <= axis < rank:
        raise UnsupportedError(f"Softmax axis {axis} for a {rank}-D tensor", where=where, fix="Check the model")
    axis %= rank
    if axis == 0:
        raise UnsupportedError("Softmax over the batch axis", where=where,
                               fix="Apply softmax over another axis (edgecomp runs one batch row at a time)")
    if c.opset < 13 and axis < rank - 1:  # the coerced 2-D semantics: rows of every axis from `axis` on
        flat = (math.prod(xs[:axis]), math.prod(xs[axis:]))
        y = c.add_tensor(c.fresh(f"{n.output[0]}_rows"), flat)
        c.add_node(f"{n.name}_rows", "reshape", [onnx_order(c, x, xs)], [y], shape=flat)
        z = c.add_tensor(c.fresh(f"{n.output[0]}_softmax"), flat)
        c.add_node(n.name, "softmax", [y], [z], beta=1.0)
        o = out_tensor(c, n, xs, layout=None)
        c.add_node(f"{n.name}_shape", "reshape", [z], [o], shape=tuple(c.g.tensors[o].shape))
        return
    ir_axis = onnx_axis(c, x, xs, axis)
    if ir_axis is None:
        x = onnx_order(c, x, xs)  # the data in ONNX order: the axis is ONNX's
        ir_axis = axis
    o = like_input(c, n, x, xs)
    attrs = {} if ir_axis == len(c.g.tensors[x].shape) - 1 else {"axis": ir_axis}
    c.add_node(n.name, "softmax", [x], [o], beta=1.0, **attrs)
