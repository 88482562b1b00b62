"""Broadcast operands in the layout of the operand they broadcast against.

An elementwise op's IR operands must broadcast by numpy's rules in IR memory order.  The full-size
operand (``ref``, ONNX shape ``S``) keeps its layout (NHWC for a map made by a convolution, a
relabelled view after a Transpose, ONNX order else); the other operand -- an activation or a
constant of ONNX shape ``ys`` that broadcasts to ``S`` -- is laid out the same way, its broadcast
axes as units: an ``[N, C, 1, 1]`` squeeze-excite scale against an NHWC ``[N, C, H, W]`` map becomes
``[N, 1, 1, C]``.  A constant is transformed here (numpy); an activation through ``to_layout`` (a
copy only where unit axes alone do not make the orders agree).
"""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from .layout import Layout, groups, normal, onnx_order, to_layout


def padded(ys, r: int) -> tuple[int, ...]:
    return (1,) * (r - len(ys)) + tuple(int(d) for d in ys)


def reference(c, ref: str, S: tuple) -> str:
    """``ref`` with an IR shape its layout explains (its memory shape, or ``S`` in ONNX order)."""
    L = normal(c.layouts.get(ref))
    shape = tuple(c.g.tensors[ref].shape)
    if L is None and shape == tuple(S) or L is not None and shape == L.memory_shape:
        return ref
    return onnx_order(c, ref, tuple(S))


def target(c, ref: str, S: tuple, ys: tuple) -> Layout | None | str:
    """The layout of an operand of ONNX shape ``ys`` (broadcast to ``S``) next to ``ref``: None
    (ONNX order), a Layout, or "onnx" when ``ref`` must itself be put in ONNX order."""
    L = normal(c.layouts.get(ref))
    if L is None:
        return None
    gs = groups(tuple(S), L.logical)
    if gs is None:
        return "onnx"
    yp = padded(ys, len(S))
    logical = list(L.logical)
    for k, g in enumerate(gs):
        if yp[k] != S[k]:
            for j in g:
                logical[j] = 1
    return Layout(tuple(logical), L.perm)


def check_shapes(shapes, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise UnsupportedError(f"operands of shapes {[list(s) for s in shapes]} do not broadcast", where=where,
                               fix="Check the model's shapes") from None


def const_in_layout(c, ref: str, S: tuple, value: np.ndarray, where: str) -> np.ndarray:
    """A constant broadcast against ``ref`` (ONNX shape ``S``), as an array in ref's IR layout (its
    broadcast axes units).  ``ref`` must have an IR shape its layout explains (:func:`reference`)."""
    v = np.asarray(value, np.float64)
    S = tuple(S)
    if check_shapes([S, v.shape], where) != S:
        raise UnsupportedError(f"a constant of shape {list(v.shape)} that broadcasts the {list(S)} input to a "
                               "bigger shape", where=where, fix="Give the constant the input's shape or fewer axes")
    vp = v.reshape(padded(v.shape, len(S)))
    t = target(c, ref, S, vp.shape)
    if t is None:
        return vp
    if t == "onnx":
        raise UnsupportedError("a constant operand next to a tensor laid out in an unusual order", where=where)
    return np.ascontiguousarray(vp.reshape(t.logical).transpose(t.perm))


def operand_in_layout(c, ref: str, S: tuple, y: str, ys: tuple) -> str:
    """An activation ``y`` (ONNX shape ``ys``, broadcast to ``S``) in ref's layout."""
    t = target(c, ref, S, ys)
    if t is None:
        return to_layout(c, y, tuple(ys), None, shape=padded(ys, len(S)))
    return to_layout(c, y, tuple(ys), t, shape=t.memory_shape)
