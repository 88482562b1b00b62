"""Reductions: ReduceMean (any axes, keepdims either way) and ArgMax (any axis, keepdims).

The reduced ONNX axes are mapped to the IR axes of the input as it is laid out
(:func:`~edgecomp.frontends.onnx.layout.onnx_axis`), so a mean over H and W of a channels-last
tensor reads it where it is; the output keeps the input's layout with the reduced axes made unit
(keepdims) or dropped.  Where an axis is not one axis of the input's memory, the input is first
put in ONNX order.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedError
from .context import Ctx, out_tensor
from .layout import Layout, groups, onnx_axis, onnx_order
from .registry import onnx_op


def _axes(c: Ctx, n, a: dict, rank: int, where: str) -> list[int] | None:
    """The reduced ONNX axes (attribute, or the opset-18 second input), non-negative; None: all."""
    axes = a.get("axes")
    if axes is None and len(n.input) > 1 and n.input[1]:
        if n.input[1] not in c.consts:
            raise UnsupportedError(f"{n.op_type} with axes that are not a constant", where=where,
                                   fix="Export with constant axes")
        axes = [int(v) for v in np.asarray(c.consts[n.input[1]]).reshape(-1)]
    if axes is None or len(axes) == 0:
        return None
    if any(not -rank <= int(v) < rank for v in axes):
        raise UnsupportedError(f"{n.op_type} axes {list(axes)} for a {rank}-D tensor", where=where,
                               fix="Check the model")
    return sorted({int(v) % rank for v in axes})


def reduce_layout(c: Ctx, x: str, xs: tuple, axes: list[int], keep: bool) -> tuple[str, tuple[int, ...], object]:
    """(the input to read, its reduced IR axes, the output's layout) for a reduction over the ONNX
    ``axes`` of x: in x's own layout when each axis is one axis of its memory, else in ONNX order."""
    ir_axes = [onnx_axis(c, x, xs, ax) for ax in axes]
    L = c.layouts.get(x)
    if None in ir_axes or L is None:
        if None in ir_axes or tuple(c.g.tensors[x].shape) != tuple(xs):
            x = onnx_order(c, x, xs)
        return x, tuple(axes), None
    gs = groups(tuple(xs), L.logical)
    red = {gs[ax][0] for ax in axes}  # the reduced logical axes (one each: onnx_axis said so)
    if keep:
        return x, tuple(sorted(ir_axes)), Layout(tuple(1 if j in red else d for j, d in enumerate(L.logical)), L.perm)
    kept = [j for j in range(len(L.logical)) if j not in red]
    logical = tuple(L.logical[j] for j in kept)
    perm = tuple(kept.index(p) for p in L.perm if p in kept)
    return x, tuple(sorted(ir_axes)), Layout(logical, perm)


def _out_shape(xs: tuple, axes: list[int], keep: bool) -> tuple[int, ...]:
    return tuple(1 if i in axes else d for i, d in enumerate(xs)) if keep else \
        tuple(d for i, d in enumerate(xs) if i not in axes)


def _batch_free(xs: tuple, axes: list[int], op: str, where: str) -> list[int]:
    """The axes without the batch axis when it has size 1 (reducing it is a no-op)."""
    if 0 in axes and xs[0] != 1:
        raise UnsupportedError(f"{op} over the batch axis", where=where,
                               fix="Reduce over the other axes (edgecomp runs one batch row at a time)")
    return [ax for ax in axes if ax != 0]


@onnx_op("ReduceMean")
def lower_reduce_mean(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    rank = len(xs)
    keep = bool(a.get("keepdims", 1))
    axes = _axes(c, n, a, rank, where)
    if axes is None:
        if a.get("noop_with_empty_axes", 0):  # the input itself
            c.alias[n.output[0]] = x
            c.shapes[n.output[0]] = tuple(xs)
            return
        axes = list(range(rank))
    oshape = _out_shape(xs, axes, keep)
    axes = _batch_free(xs, axes, "ReduceMean", where)
    if not axes or math.prod(xs[ax] for ax in axes) == 1:  # only unit axes: the same values reshaped
        x = onnx_order(c, x, xs)
        o = out_tensor(c, n, oshape, layout=None)
        c.add_node(n.name, "reshape", [x], [o], shape=tuple(c.g.tensors[o].shape))
        return
    x, ir_axes, lay = reduce_layout(c, x, xs, axes, keep)
    o = out_tensor(c, n, oshape, layout=lay)
    c.add_node(n.name, "mean", [x], [o], axes=ir_axes, keep_dims=keep, act=(-math.inf, math.inf))


@onnx_op("ArgMax")
def lower_argmax(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    rank = len(xs)
    if a.get("select_last_index", 0):
        raise UnsupportedError("ArgMax with select_last_index=1", where=where,
                               fix="Export with select_last_index=0 (the first largest value)")
    axis = int(a.get("axis", 0))
    if not -rank <= axis < rank:
        raise UnsupportedError(f"ArgMax axis {axis} for a {rank}-D tensor", where=where, fix="Check the model")
    axis %= rank
    keep = bool(a.get("keepdims", 1))
    if axis == 0:
        raise UnsupportedError("ArgMax over the batch axis", where=where, fix="Take the argmax over another axis")
    x, ir_axes, lay = reduce_layout(c, x, xs, [axis], keep)
    o = out_tensor(c, n, _out_shape(xs, [axis], keep), dtype="int32", layout=lay)
    c.add_node(n.name, "argmax", [x], [o], axis=ir_axes[0], keep_dims=keep)
