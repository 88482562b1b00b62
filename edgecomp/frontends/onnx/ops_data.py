"""Data movement: Pad, Slice, Split, Gather, Expand, DepthToSpace and SpaceToDepth.

Axis ops work on the data in the order its layout holds it (:func:`.layout.axis_view`: NHWC
feature maps stay NHWC, the ONNX axes mapped to the IR's), so they move no more data than their
own output.  DepthToSpace / SpaceToDepth are the ONNX spec's reshape - transpose - reshape,
relabelled through the layout model (at most one copy where a consumer needs another order).
Index operands (pads, starts / ends / axes / steps, split sizes, gather indices) must be
constants; constant subgraphs computing them are folded at import (``fold.py``).
"""
from __future__ import annotations

import numpy as np

from ...errors import ModelError, UnsupportedError
from .context import Ctx
from .layout import axis_view, perm_layout, set_layout
from .ops_shape import reshape_tensor, transpose_tensor
from .registry import onnx_op

MAX_DIMS = 6  # the C kernels' limit (EC_DATA_MAX_DIMS)


def const_input(c: Ctx, n, k: int, what: str, where: str) -> np.ndarray | None:
    """Input k of node n as a constant array (None when absent); UnsupportedError when computed at run time."""
    ins = list(n.input)
    if len(ins) <= k or not ins[k]:
        return None
    if ins[k] not in c.consts:
        raise UnsupportedError(f"{n.op_type} with {what} computed at run time", where=where,
                               fix=f"Export with constant {what} (static shapes, do_constant_folding=True)")
    return np.asarray(c.consts[ins[k]])


def _out(c: Ctx, o: str, shape, perm) -> str:
    """An output (ONNX name ``o`` and shape) held with its axes in the order ``perm``."""
    s = tuple(int(d) for d in shape)
    c.shapes[o] = s
    set_layout(c, o, perm_layout(s, perm))  # (no layout when only unit axes move: the same memory order)
    return c.add_tensor(o, tuple(s[p] for p in perm))


def _rank(xs, where: str) -> int:
    if len(xs) > MAX_DIMS:
        raise UnsupportedError(f"a {len(xs)}-D tensor", where=where, fix=f"Use at most {MAX_DIMS}-D tensors")
    return len(xs)


def _axes(axes, rank: int, where: str) -> list[int]:
    out = [int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1)]
    if any(not 0 <= a < rank for a in out) or len(set(out)) != len(out):
        raise ModelError(f"axes {np.asarray(axes).tolist()} for a {rank}-D tensor", where=where, fix="Check the model")
    return out


@onnx_op("Pad")
def lower_pad(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """constant, edge or reflect; negative pads crop (a slice first)."""
    rank = _rank(xs, where)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "edge", "reflect"):
        raise UnsupportedError(f"Pad mode {mode!r}", where=where, fix="Use constant, edge or reflect padding")
    p = const_input(c, n, 1, "pads", where) if len(n.input) > 1 else None
    p = np.asarray(a.get("pads", [0] * 2 * rank)) if p is None else p
    value = const_input(c, n, 2, "a constant value", where)
    value = float(a.get("value", 0.0)) if value is None else float(np.asarray(value).reshape(-1)[0])
    axes = const_input(c, n, 3, "axes", where)
    axes = list(range(rank)) if axes is None else _axes(axes, rank, where)
    p = [int(v) for v in np.asarray(p).reshape(-1)]
    if len(p) != 2 * len(axes):
        raise ModelError(f"{len(p)} pads for {len(axes)} axes", where=where, fix="Check the model")
    before, after = [0] * rank, [0] * rank
    for i, ax in enumerate(axes):
        before[ax], after[ax] = p[i], p[i + len(axes)]
    if min(before + after) < 0:  # negative pads crop: a slice, then the rest of the padding
        begin = [max(0, -b) for b in before]
        size = [d - max(0, -b) - max(0, -e) for d, b, e in zip(xs, before, after)]
        if min(size) < 1:
            raise ModelError(f"pads {p} crop {list(xs)} to nothing", where=where, fix="Check the model")
        x, xs = _slice(c, x, xs, begin, [1] * rank, size, f"{n.output[0]}_cropped", f"{n.name or n.output[0]}_crop"), tuple(size)
        before, after = [max(0, b) for b in before], [max(0, e) for e in after]
    if mode == "reflect" and any(b >= d or e >= d for b, e, d in zip(before, after, xs) if b or e):
        raise UnsupportedError(f"reflect padding {p} of {list(xs)} by as much as the axis or more", where=where,
                               fix="Reflect-pad by less than the axis size")
    x, perm = axis_view(c, x, xs)
    oshape = tuple(d + b + e for d, b, e in zip(xs, before, after))
    o = _out(c, n.output[0], oshape, perm)
    c.add_node(n.name, "pad", [x], [o], pads=tuple((before[p_], after[p_]) for p_ in perm), mode=mode,
               value=value if mode == "constant" else 0.0)


def _slice(c: Ctx, x: str, xs: tuple, begin, step, count, o: str, name: str) -> str:
    """IR slice of x (ONNX axes: begin, step, count) into a new tensor ``o`` in x's axis order."""
    x, perm = axis_view(c, x, xs)
    out = _out(c, o, count, perm)
    c.add_node(name, "slice", [x], [out], begin=tuple(int(begin[p]) for p in perm),
               step=tuple(int(step[p]) for p in perm))
    return out


def slice_axis(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """(first index, count) of ONNX Slice on one axis (negative indices from the end, clamped)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, len(range(start, end, step))


@onnx_op("Slice")
def lower_slice(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    rank = _rank(xs, where)
    if len(n.input) > 1:
        starts = const_input(c, n, 1, "starts", where)
        ends = const_input(c, n, 2, "ends", where)
        axes = const_input(c, n, 3, "axes", where)
        steps = const_input(c, n, 4, "steps", where)
    else:  # opset < 10: attributes
        starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
    starts, ends = np.asarray(starts).reshape(-1), np.asarray(ends).reshape(-1)
    axes = list(range(len(starts))) if axes is None else _axes(axes, rank, where)
    steps = np.ones(len(axes), np.int64) if steps is None else np.asarray(steps).reshape(-1)
    if not len(starts) == len(ends) == len(axes) == len(steps) or np.any(steps == 0):
        raise ModelError("Slice with starts / ends / axes / steps of different lengths or a step of 0", where=where,
                         fix="Check the model")
    begin, step, count = [0] * rank, [1] * rank, list(xs)
    for s_, e_, ax, st in zip(starts, ends, axes, steps):
        begin[ax], count[ax] = slice_axis(int(s_), int(e_), int(st), xs[ax])
        step[ax] = int(st)
    if min(count) < 1:
        raise UnsupportedError("Slice with an empty result", where=where, fix="Remove the empty slice from the model")
    want = c.shapes.get(n.output[0])
    if want is not None and tuple(want) != tuple(count):
        raise ModelError(f"Slice of {list(xs)} gives {count}, shape inference says {list(want)}", where=where)
    _slice(c, x, xs, begin, step, count, n.output[0], n.name)


@onnx_op("Split")
def lower_split(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """One IR split (several outputs) along the axis, in the data's own order."""
    rank = _rank(xs, where)
    axis = _axes([a.get("axis", 0)], rank, where)[0]
    outs = [o for o in n.output]
    if any(not o for o in outs):
        raise UnsupportedError("Split with an unnamed output", where=where)
    sizes = const_input(c, n, 1, "split sizes", where) if len(n.input) > 1 else None
    sizes = a.get("split") if sizes is None else sizes
    if sizes is None:  # equal parts (the last smaller, opset 18)
        k = len(outs)
        part = -(-xs[axis] // k)
        sizes = [part] * (k - 1) + [xs[axis] - part * (k - 1)]
    sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
    if len(sizes) != len(outs) or sum(sizes) != xs[axis] or min(sizes) < 1:
        raise ModelError(f"Split of {xs[axis]} into {sizes} for {len(outs)} outputs", where=where,
                         fix="Check the model")
    x, perm = axis_view(c, x, xs)
    names = []
    for o, sz in zip(outs, sizes):
        names.append(_out(c, o, tuple(sz if i == axis else d for i, d in enumerate(xs)), perm))
    c.add_node(n.name, "split", [x], names, axis=perm.index(axis))


@onnx_op("Gather")
def lower_gather(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """Constant indices along an axis (negative ones from the end)."""
    rank = _rank(xs, where)
    axis = _axes([a.get("axis", 0)], rank, where)[0]
    ins = list(n.input)
    if ins[1] not in c.consts:
        raise UnsupportedError("Gather with indices computed at run time (e.g. an embedding lookup)", where=where,
                               fix="edgecomp's C API takes one int8 or float32 input: gather with constant indices")
    idx = np.asarray(c.consts[ins[1]]).astype(np.int64)
    if idx.size == 0 or idx.min() < -xs[axis] or idx.max() >= xs[axis]:
        raise ModelError(f"Gather indices outside [-{xs[axis]}, {xs[axis]})", where=where, fix="Check the model")
    idx = np.where(idx < 0, idx + xs[axis], idx)
    oshape = tuple(xs[:axis]) + idx.shape + tuple(xs[axis + 1:])
    if len(oshape) > MAX_DIMS:
        raise UnsupportedError(f"Gather to a {len(oshape)}-D tensor", where=where)
    flat = idx.reshape(-1)
    mid_shape = tuple(len(flat) if i == axis else d for i, d in enumerate(xs))
    name = f"{n.output[0]}_indices"
    while name in c.g.tensors:
        name += "_"
    c.add_tensor(name, flat.shape, "int32", None, flat.astype(np.int32))
    mid = n.output[0] if idx.ndim == 1 else f"{n.output[0]}_gathered"
    x, perm = axis_view(c, x, xs)
    g = _out(c, mid, mid_shape, perm)
    c.add_node(n.name, "gather", [x, name], [g], axis=perm.index(axis))
    if idx.ndim != 1:  # scalar or N-D indices: the gathered axis reshaped to the indices' shape (an alias)
        reshape_tensor(c, g, mid_shape, oshape, n.output[0], f"{n.name or n.output[0]}_shape")


@onnx_op("Expand")
def lower_expand(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """Broadcast to the output shape (numpy rules): unit axes repeated."""
    oshape = c.shapes.get(n.output[0])
    if oshape is None:
        raise ModelError("Expand output has no static shape", where=where)
    _rank(oshape, where)
    if len(xs) < len(oshape):  # numpy rules: the missing leading axes are units
        full = (1,) * (len(oshape) - len(xs)) + tuple(xs)
        x = reshape_tensor(c, x, xs, full, f"{n.output[0]}_ranked", f"{n.name or n.output[0]}_rank")
        xs = full
    if any(d != e and d != 1 for d, e in zip(xs, oshape)):
        raise ModelError(f"Expand of {list(xs)} to {list(oshape)}", where=where, fix="Check the model")
    if tuple(xs) == tuple(oshape):
        reshape_tensor(c, x, xs, tuple(oshape), n.output[0], n.name)
        return
    x, perm = axis_view(c, x, xs)
    o = _out(c, n.output[0], oshape, perm)
    c.add_node(n.name, "broadcast", [x], [o])


@onnx_op("DepthToSpace", "SpaceToDepth")
def lower_depth_space(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """The ONNX spec's reshape - transpose - reshape (DCR or CRD for DepthToSpace)."""
    if len(xs) != 4:
        raise ModelError(f"{n.op_type} of a {len(xs)}-D tensor", where=where, fix="Check the model")
    s = int(a.get("blocksize", 0))
    b, ch, h, w = xs
    mode = a.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if n.op_type == "DepthToSpace":
        if s < 1 or ch % (s * s) or mode not in ("DCR", "CRD"):
            raise ModelError(f"DepthToSpace {mode} by {s} of {list(xs)}", where=where, fix="Check the model")
        cc = ch // (s * s)
        six, perm = ((b, s, s, cc, h, w), (0, 3, 4, 1, 5, 2)) if mode == "DCR" else \
            ((b, cc, s, s, h, w), (0, 1, 4, 2, 5, 3))
        out = (b, cc, h * s, w * s)
    else:
        if s < 1 or h % s or w % s:
            raise ModelError(f"SpaceToDepth by {s} of {list(xs)}", where=where, fix="Check the model")
        six, perm, out = (b, ch, h // s, s, w // s, s), (0, 3, 5, 1, 2, 4), (b, ch * s * s, h // s, w // s)
    o = n.output[0]
    nm = n.name or o
    t1 = reshape_tensor(c, x, xs, six, f"{o}_blocks", f"{nm}_blocks")
    t2 = transpose_tensor(c, t1, six, perm, f"{o}_moved", f"{nm}_move", where)
    reshape_tensor(c, t2, tuple(six[p] for p in perm), out, o, nm)
