r"""How an IR tensor holds an ONNX tensor: the layout model of the ONNX frontend.

ONNX tensors are channels-first (NCHW); the IR's spatial ops take channels-last (NHWC).  Rather
than copying at every boundary, each IR tensor records a :class:`Layout`: the ONNX data viewed in
the shape ``logical`` (the ONNX shape, or a refinement of it: one ONNX axis may span several
logical axes) and transposed by ``perm`` is exactly the IR tensor's memory.  No layout (``None``)
means the IR memory is the ONNX data in its own order.

* A 4-D activation made by a spatial op: ``Layout((N, C, H, W), (0, 2, 3, 1))`` (NHWC).
* Flatten of it: the same layout; the ONNX shape (N, C*H*W) coarsens the logical shape (the
  fully connected layer that reads it permutes its weight columns instead of moving data).
* Transpose, and a reshape whose shape is compatible with the logical axes (a channel shuffle),
  only relabel the layout: no data moves.
* Everything else reads the data in ONNX order (:func:`onnx_order`) or channels-last
  (:func:`channels_last`); those insert an IR ``transpose`` (a copy) only when the layout
  requires it, on the quantized side of a QDQ pair so the QDQ folding still sees its islands.

Pure shape helpers, with doctests::

    >>> refine((1, 6, 4, 4), (1, 2, 3, 16))
    (1, 2, 3, 4, 4)
    >>> refine((6, 4), (4, 6)) is None
    True
    >>> groups((1, 96), (1, 6, 4, 4))
    [[0], [1, 2, 3]]
    >>> L = Layout((1, 4, 2, 3), (0, 2, 3, 1))    # NHWC of an NCHW [1, 4, 2, 3]
    >>> reshaped(L, (1, 4, 2, 3), (1, 2, 2, 6))   # split C in 2 x 2, merge H, W
    Layout(logical=(1, 2, 2, 2, 3), perm=(0, 3, 4, 1, 2))
    >>> transposed(Layout((1, 4, 2, 3), (0, 2, 3, 1)), (1, 4, 2, 3), (0, 2, 3, 1))  # NCHW->NHWC: ONNX order
    >>> memory_order(Layout((1, 1, 1, 8), (0, 2, 3, 1)))  # unit axes move freely: no copy needed
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import ir

NHWC = (0, 2, 3, 1)


@dataclass(frozen=True)
class Layout:
    logical: tuple[int, ...]  # the ONNX data viewed in this shape (the ONNX shape or a refinement)
    perm: tuple[int, ...]  # the IR memory holds the logical axes in this order

    @property
    def memory_shape(self) -> tuple[int, ...]:
        return tuple(self.logical[p] for p in self.perm)


def channels_last_layout(shape: tuple[int, ...]) -> Layout:
    return Layout(tuple(shape), NHWC)


def refine(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The coarsest shape both ``a`` and ``b`` coarsen (merging consecutive axes; unit axes go
    anywhere), or None.  The unit axes of ``a`` are kept in place."""
    if math.prod(a) != math.prod(b):
        return None
    cuts = sorted(set(_prefix(a)) | set(_prefix(b)))
    for x, y in zip(cuts, cuts[1:]):
        if y % x:
            return None
    core = [y // x for x, y in zip(cuts, cuts[1:])]
    out, i = [], 0
    for d in a:  # each axis of a, split into the core factors it spans
        if d == 1:
            out.append(1)
            continue
        prod = 1
        while prod < d:
            prod *= core[i]
            out.append(core[i])
            i += 1
    return tuple(out)


def _prefix(s):
    p, out = 1, [1]
    for d in s:
        p *= d
        out.append(p)
    return out


def groups(coarse: tuple[int, ...], fine: tuple[int, ...]) -> list[list[int]] | None:
    """For each axis of ``coarse``, the axes of ``fine`` it merges (None if ``fine`` does not refine
    ``coarse``).  A unit axis of ``coarse`` may merge none; a unit axis of ``fine`` joins the axis
    before it (the one after, at the start)."""
    if math.prod(coarse) != math.prod(fine):
        return None
    big = [j for j, d in enumerate(fine) if d != 1]
    out, k = [], 0
    for d in coarse:
        g, prod = [], 1
        while prod < d and k < len(big):
            prod *= fine[big[k]]
            g.append(big[k])
            k += 1
        if prod != d:
            return None
        out.append(g)
    if not out:
        return None
    units = [j for j, d in enumerate(fine) if d == 1]
    for i, d in enumerate(coarse):  # a unit axis of coarse takes a unit axis of fine at its place
        if d != 1 or out[i]:
            continue
        lo = max((g[-1] for g in out[:i] if g), default=-1)
        hi = min((g[0] for g in out[i + 1:] if g), default=len(fine))
        free = [j for j in units if lo < j < hi and not any(j in g for g in out)]
        if free:
            out[i].append(free[0])
    for j in units:  # the other unit axes of fine: with the group of the axis before
        if any(j in g for g in out):
            continue
        before = [i for i, g in enumerate(out) if g and g[-1] < j]
        target = before[-1] if before else next((i for i, g in enumerate(out) if g), 0)
        out[target].append(j)
    return [sorted(g) for g in out]


def _split_layout(L: Layout, fine: tuple[int, ...]) -> Layout | None:
    """``L`` with its logical shape refined to ``fine`` (each logical axis split in place)."""
    gs = groups(L.logical, fine)
    if gs is None:
        return None
    perm = tuple(k for p in L.perm for k in gs[p])
    return Layout(tuple(fine), perm)


def memory_order(L: Layout | None) -> bool:
    """Whether the IR memory is the ONNX data in ONNX order (the axes of size > 1 keep their order)."""
    if L is None:
        return True
    big = [p for p in L.perm if L.logical[p] != 1]
    return big == sorted(big)


def normal(L: Layout | None) -> Layout | None:
    return None if memory_order(L) else L


def reshaped(L: Layout | None, s_in: tuple[int, ...], s_out: tuple[int, ...]) -> Layout | None | str:
    """The layout of ``reshape(x, s_out)`` done as an alias of x's memory: a layout, None (ONNX
    order) or "copy" (the data must be put in ONNX order first)."""
    if memory_order(L):
        return None
    r = refine(L.logical, tuple(s_out))
    if r is None:
        return "copy"
    return normal(_split_layout(L, r))


def transposed(L: Layout | None, s_in: tuple[int, ...], t: tuple[int, ...]) -> Layout | None | str:
    """The layout of ``transpose(x, t)`` done as an alias (a relabelling): ONNX axis k of the output
    is axis t[k] of the input."""
    logical = tuple(s_in) if L is None else L.logical
    perm = tuple(range(len(s_in))) if L is None else L.perm
    gs = groups(tuple(s_in), logical)
    if gs is None:
        return "copy"
    order = [k for a in t for k in gs[a]]  # the output's logical axes, as input logical axes
    new_logical = tuple(logical[k] for k in order)
    where = {k: i for i, k in enumerate(order)}
    new_perm = tuple(where[p] for p in perm)  # (the batch axis may end up anywhere: the IR takes any order)
    return normal(Layout(new_logical, new_perm))


def onnx_axis(c, x: str, s: tuple[int, ...], axis: int) -> int | None:
    """The IR axis of ONNX axis ``axis`` of x (its memory as the IR shape ``Layout.memory_shape``),
    or None when that axis is not one axis of x's memory."""
    L = c.layouts.get(x)
    if memory_order(L):
        return axis if tuple(c.g.tensors[x].shape) == tuple(s) else None
    gs = groups(tuple(s), L.logical)
    if gs is None or len(gs[axis]) != 1 or tuple(c.g.tensors[x].shape) != L.memory_shape:
        return None
    return L.perm.index(gs[axis][0])


def _new_name(c, base: str) -> str:
    n = base
    while n in c.g.tensors:
        c.counter += 1
        n = f"{base}_{c.counter}"
    return n


def _move(c, x: str, op: str, shape: tuple[int, ...], name: str, **attrs) -> str:
    """A reshape or transpose of x (for a dequantize's output: of its integer input, then
    dequantized again, so that QDQ folding still sees dequantize -> op -> quantize)."""
    p = c.g.producer(x)
    t = c.g.tensors[x]
    if p is not None and p.op == "dequantize":
        q = _move(c, p.inputs[0], op, shape, name + "_q", **attrs)
        o = c.add_tensor(_new_name(c, name), shape, t.dtype)
        c.add_node(f"{o}_dequantize", "dequantize", [q], [o])
        return o
    o = c.add_tensor(_new_name(c, name), shape, t.dtype, t.quant)
    if op == "reshape":
        attrs = dict(attrs, shape=tuple(shape))
    c.add_node(o, op, [x], [o], **attrs)
    return o


def onnx_order(c, x: str, s: tuple[int, ...]) -> str:
    """x's data in ONNX order, IR shape ``s`` (x itself when it already is)."""
    L = c.layouts.get(x)
    key = (x, "onnx")
    if key in c.moved:
        return c.moved[key]
    y = x
    if not memory_order(L):
        if tuple(c.g.tensors[y].shape) != L.memory_shape:
            y = _move(c, y, "reshape", L.memory_shape, f"{x}_mem")
        inv = tuple(int(i) for i in np.argsort(L.perm))
        y = _move(c, y, "transpose", L.logical, f"{x}_onnx", perm=inv)
    if tuple(c.g.tensors[y].shape) != tuple(s):
        y = _move(c, y, "reshape", tuple(s), f"{x}_shaped")
    c.layouts.pop(y, None)
    c.moved[key] = y
    return y


def to_layout(c, x: str, s: tuple[int, ...], target: Layout | None, shape: tuple[int, ...] | None = None) -> str:
    """x's data in layout ``target`` with IR shape ``shape`` (default: the layout's memory shape),
    copying only when the memory order differs (at most one IR transpose)."""
    want_shape = tuple(shape) if shape is not None else ir_shape(target, s)
    target = normal(target)
    L = normal(c.layouts.get(x))
    key = (x, target, want_shape)
    if key in c.moved:
        return c.moved[key]
    y = x
    if L != target and not (L is None and target is None):
        cur = L if L is not None else Layout(tuple(s), tuple(range(len(s))))
        tgt = target if target is not None else Layout(tuple(s), tuple(range(len(s))))
        r = refine(cur.logical, tgt.logical)
        lr = _split_layout(cur, r) if r is not None else None
        tr = _split_layout(tgt, r) if r is not None else None
        if lr is None or tr is None:  # no common view: through ONNX order
            y = onnx_order(c, x, s)
            lr = tr = None
            cur = Layout(tuple(s), tuple(range(len(s))))
            r = refine(cur.logical, tgt.logical)
            lr, tr = _split_layout(cur, r), _split_layout(tgt, r)
        mperm = tuple(lr.perm.index(a) for a in tr.perm)
        if mperm != tuple(range(len(mperm))):
            if tuple(c.g.tensors[y].shape) != lr.memory_shape:
                y = _move(c, y, "reshape", lr.memory_shape, f"{x}_mem")
            y = _move(c, y, "transpose", tr.memory_shape, f"{x}_relaid", perm=mperm)
    if tuple(c.g.tensors[y].shape) != want_shape:
        y = _move(c, y, "reshape", want_shape, f"{x}_as")
    set_layout(c, y, target)
    c.moved[key] = y
    return y


def axis_view(c, x: str, s: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """x as an IR tensor whose axis k is ONNX axis perm[k] (its layout's order when the layout is
    a plain permutation of the ONNX axes, e.g. NHWC; else NHWC for a 4-D tensor, ONNX order for
    the others: one copy): (name, perm).  Ops
    that work axis by axis (pad, slice, split, gather) run in that order and give their output
    the layout ``Layout(out_shape, perm)``, so no data moves for them."""
    L = c.layouts.get(x)
    if L is not None and L.logical == tuple(s) and tuple(c.g.tensors[x].shape) == L.memory_shape:
        return x, tuple(L.perm)
    if L is not None and len(s) == 4:  # a 4-D tensor in another order (after DepthToSpace): NHWC, which
        return to_layout(c, x, s, channels_last_layout(s)), NHWC  # the next spatial op takes as it is
    return onnx_order(c, x, s), tuple(range(len(s)))


def perm_layout(shape: tuple[int, ...], perm: tuple[int, ...]) -> Layout | None:
    """The layout of an ONNX tensor of ``shape`` held with its axes in the order ``perm``."""
    return normal(Layout(tuple(shape), tuple(perm)))


def channels_last(c, x: str, s: tuple[int, ...]) -> str:
    """x as a 4-D NHWC tensor for the spatial ops (conv, pools)."""
    if len(s) != 4:
        raise ValueError("channels_last needs a 4-D ONNX shape")
    return to_layout(c, x, s, channels_last_layout(s))


def ir_shape(L: Layout | None, s: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s) if L is None else L.memory_shape


def set_layout(c, name: str, L: Layout | None) -> None:
    L = normal(L)
    if L is None:
        c.layouts.pop(name, None)
    else:
        c.layouts[name] = L


def dtype_of(c, x: str) -> str:
    return c.g.tensors[x].dtype


def as_tensor_shape(t: ir.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)
