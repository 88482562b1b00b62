"""Elementwise ops: Relu and Clip (a clamp, fused into its producer by fuse_activations) and Softmax
(Add, Sub, Mul, ... are in ops_binary.py)."""
from __future__ import annotations

import math

from ...errors import UnsupportedError
from .context import Ctx, like_input
from .layout import onnx_axis, onnx_order
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
    axis = a.get("axis", -1) % len(xs)
    ir_axis = onnx_axis(c, x, xs, axis)
    if ir_axis != len(c.g.tensors[x].shape) - 1 and axis == len(xs) - 1:
        x = onnx_order(c, x, xs)  # the data in ONNX order: the axis is the innermost one
        ir_axis = axis
    if ir_axis != len(c.g.tensors[x].shape) - 1:
        raise UnsupportedError(f"Softmax over axis {a.get('axis', -1)} of a {len(xs)}-D tensor, which is not the "
                               "innermost axis of the data as edgecomp lays it out (NHWC for 4-D tensors)",
                               where=where, fix="Apply softmax over the channel axis or over the last axis of a "
                                                "tensor that is not 4-D")
    o = like_input(c, n, x, xs)
    c.add_node(n.name, "softmax", [x], [o], beta=1.0)
