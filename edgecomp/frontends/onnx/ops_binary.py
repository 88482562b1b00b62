"""Binary elementwise ops with broadcasting: Add, Sub, Mul, Div (by a constant), Min, Max.

* Two activations: IR add / sub / mul / minimum / maximum, the second operand laid out like the
  first (``broadcast.py``; the squeeze-excite ``[N, C, 1, 1] * [N, C, H, W]`` becomes
  ``[N, 1, 1, C] * [N, H, W, C]``).  Div of two activations is refused.
* An activation and a constant: ``affine`` (x * scale + bias with per-channel or scalar constants:
  Add, Sub (either order), Mul, Div by the constant), ``clamp`` for Min / Max with a scalar; chains
  of them fuse into one affine (``passes/elementwise.fuse_affine``), so input normalisation
  ``(x - mean) / std`` is one per-channel op.  In a QDQ graph an affine becomes int8 (per channel)
  or a table (scalar constants).
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ModelError, UnsupportedError
from .broadcast import check_shapes, const_in_layout, operand_in_layout, padded, reference, target
from .context import Ctx, like_input, out_tensor, shape_of
from .layout import onnx_order, to_layout
from .registry import onnx_op

IR_OP = {"Add": "add", "Sub": "sub", "Mul": "mul", "Min": "minimum", "Max": "maximum"}
NO_ACT = (-math.inf, math.inf)


@onnx_op("Add", "Sub", "Mul", "Div", "Min", "Max", activation=False)
def lower_binary(c: Ctx, n, a: dict, where: str) -> None:
    op = n.op_type
    ins = list(n.input)
    if len(ins) != 2 or not all(ins):
        raise UnsupportedError(f"{op} with {len(ins)} inputs", where=where, fix="Use two inputs")
    is_const = [i in c.consts for i in ins]
    if all(is_const):
        raise UnsupportedError(f"{op} of two constants", where=where, fix="Fold constants before export")
    for i, k in zip(ins, is_const):
        if not k and c.name(i) not in c.g.tensors:
            raise ModelError(f"input {i!r} is not produced by any supported node", where=where)
    shapes = [tuple(shape_of(c, i)) for i in ins]
    S = check_shapes(shapes, where)
    if any(is_const):
        _with_constant(c, n, op, is_const.index(False), S, shapes, where)
        return
    if op == "Div":
        raise UnsupportedError("Div of two tensors", where=where, fix="Divide by a constant (or multiply)")
    x, y = c.name(ins[0]), c.name(ins[1])
    xs, ys = shapes
    if op == "Add" and xs == ys:  # (the same-shape add, as it always was)
        y = to_layout(c, y, ys, c.layouts.get(x), shape=c.g.tensors[x].shape)
        c.add_node(n.name, "add", [x, y], [like_input(c, n, x, xs)], act=NO_ACT)
        return
    full = [k for k in (0, 1) if shapes[k] == S]
    names = [x, y]
    if full:
        r = full[0]
        ref = reference(c, names[r], S)
        if target(c, ref, S, shapes[1 - r]) == "onnx":
            ref = onnx_order(c, ref, S)
        names[r] = ref
        names[1 - r] = operand_in_layout(c, ref, S, names[1 - r], shapes[1 - r])
        o = like_input(c, n, ref, S)
    else:  # both broadcast: everything in ONNX order
        names = [to_layout(c, t, s, None, shape=padded(s, len(S))) for t, s in zip(names, shapes)]
        o = out_tensor(c, n, S, layout=None)
    c.add_node(n.name, IR_OP[op], names, [o], act=NO_ACT)


def _with_constant(c: Ctx, n, op: str, k: int, S: tuple, shapes, where: str) -> None:
    """Input k is the activation, the other a constant."""
    x, xs = c.name(n.input[k]), shapes[k]
    if tuple(xs) != S:
        raise UnsupportedError(f"a constant that broadcasts the {list(xs)} input to {list(S)}", where=where,
                               fix="Give the constant the input's shape or fewer axes")
    v = np.asarray(c.consts[n.input[1 - k]], np.float64)
    x = reference(c, x, S)
    if target(c, x, S, v.shape) == "onnx":
        x = onnx_order(c, x, S)
    o = n.output[0]
    if op in ("Min", "Max"):
        if v.size == 1:
            lo, hi = (float(v.reshape(-1)[0]), math.inf) if op == "Max" else (-math.inf, float(v.reshape(-1)[0]))
            c.add_node(n.name, "clamp", [x], [like_input(c, n, x, xs)], act=(lo, hi))
            return
        cv = const_in_layout(c, x, S, v, where)
        c.add_node(n.name, IR_OP[op], [x, c.const(f"{o}_operand", cv)], [like_input(c, n, x, xs)], act=NO_ACT)
        return
    if op == "Div":
        if k != 0:
            raise UnsupportedError("a constant divided by a tensor", where=where, fix="Divide by a constant")
        if np.any(v == 0):
            raise ModelError("division by a constant zero", where=where, fix="Check the model's constants")
        scale, bias = 1.0 / v, np.zeros_like(v)
    elif op == "Mul":
        scale, bias = v, np.zeros_like(v)
    elif op == "Add":
        scale, bias = np.ones_like(v), v
    else:  # Sub: x - c, or c - x
        scale, bias = (np.ones_like(v), -v) if k == 0 else (-np.ones_like(v), v)
    scale = const_in_layout(c, x, S, scale, where)
    bias = const_in_layout(c, x, S, bias, where)
    c.add_node(n.name, "affine", [x, c.const(f"{o}_scale", scale), c.const(f"{o}_bias", bias)],
               [like_input(c, n, x, xs)], act=NO_ACT)
