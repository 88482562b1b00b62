"""Data movement builtins: PAD, PADV2, TRANSPOSE, STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK,
DEPTH_TO_SPACE, SPACE_TO_DEPTH, SQUEEZE, EXPAND_DIMS and GATHER.

TensorFlow Lite Micro moves int8 values as they are (no requantization, whatever the tensors'
parameters), and so do the IR ops these become: bit-exact by construction.  Index operands
(paddings, begin / end / strides, sizes, axes, permutations, gather indices) must be constants,
as TFLM requires for most of them.
"""
from __future__ import annotations

import numpy as np

from ... import ir
from ...errors import UnsupportedError
from .registry import tflite_op

MAX_DIMS = 6  # the C kernels' limit (EC_DATA_MAX_DIMS); TFLM's is 4 or 5


def const(t, name: str, what: str, where: str) -> np.ndarray:
    """A constant index operand as int64 (UnsupportedError when it is computed at run time)."""
    if not name or t._raw[name][3] is None:
        raise UnsupportedError(f"a {what} computed at run time", where=where, fix=f"Give the {what} as a constant")
    return np.asarray(t._raw[name][3]).astype(np.int64)


def node(t, name: str, op: str, ins: list[str], outs: list[str], **attrs) -> None:
    """An IR node (the tensors of the file defined first)."""
    for n in ins + outs:
        if n in t._raw:
            t._define(n)
    t.nodes.append(ir.Node(name, op, list(ins), list(outs), attrs))


def temp(t, like: str, suffix: str, shape) -> str:
    """An intermediate tensor with the dtype and quantization of file tensor ``like``."""
    dtype, _, quant, _ = t._raw[like]
    name = f"{like}__{suffix}"
    while name in t.tensors or name in t._raw:
        name += "_"
    t.tensors[name] = ir.Tensor(name, tuple(int(d) for d in shape), dtype, quant)
    return name


def _rank_ok(t, x: str, where: str) -> int:
    rank = len(t.shape(x))
    if not 1 <= rank <= MAX_DIMS:
        raise UnsupportedError(f"a {rank}-D tensor", where=where, fix=f"Use 1- to {MAX_DIMS}-D tensors")
    return rank


@tflite_op('PAD', 'PADV2', inputs=2)
def lower_pad(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """pad (constant): the output's zero point, or PADV2's constant value (raw, as TFLM)."""
    x = ins[0]
    xs, ys = t.shape(x), t.shape(outs[0])
    rank = _rank_ok(t, x, where)
    p = const(t, ins[1], "paddings tensor", where).reshape(-1)
    if p.size != 2 * rank or p.min() < 0:
        raise t.r.bad(f"{where}: paddings {p.tolist()} for a {rank}-D input")
    pads = tuple((int(p[2 * i]), int(p[2 * i + 1])) for i in range(rank))
    if tuple(xs[i] + sum(pads[i]) for i in range(rank)) != tuple(ys):
        raise t.r.bad(f"{where}: pad {list(xs)} by {pads} does not give {list(ys)}")
    dtype, _, quant, _ = t._raw[outs[0]]
    if len(ins) > 2 and ins[2]:
        v = t._raw[ins[2]][3]
        if v is None or v.size != 1:
            raise UnsupportedError("PADV2 with a constant_values operand that is not one constant", where=where)
        value = float(v.reshape(-1)[0]) if dtype == "float32" else int(v.reshape(-1)[0])
    else:
        value = 0.0 if dtype == "float32" else (int(quant.zero_point[0]) if quant is not None and dtype == "int8" else 0)
    node(t, f"pad_{k}", "pad", [x], outs[:1], pads=pads, mode="constant", value=value)


@tflite_op('TRANSPOSE', inputs=2)
def lower_transpose(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    x = ins[0]
    rank = _rank_ok(t, x, where)
    perm = [int(v) % rank if v >= -rank else v for v in const(t, ins[1], "permutation", where).reshape(-1)]
    if sorted(perm) != list(range(rank)):
        raise t.r.bad(f"{where}: permutation {perm} for a {rank}-D input")
    if tuple(t.shape(x)[p] for p in perm) != tuple(t.shape(outs[0])):
        raise t.r.bad(f"{where}: transpose of {list(t.shape(x))} by {perm} is not {list(t.shape(outs[0]))}")
    node(t, f"transpose_{k}", "transpose", [x], outs[:1], perm=tuple(perm))


def _clamp(v: int, lo: int, hi: int) -> int:
    return hi if v > hi else lo if v < lo else v


def strided_axis(begin: int, end: int, stride: int, n: int, bmask: bool, emask: bool, shrink: bool) -> tuple[int, int]:
    """(start, count) of one axis as TFLM's StridedSliceStartForAxis / EndForAxis compute it."""
    start = begin + n if begin < 0 else begin
    start = _clamp(start, 0, n) if stride > 0 else _clamp(start, -1, n - 1)
    if bmask:
        start = 0 if stride > 0 else n - 1
    if shrink:
        stop = start if start >= n else start + 1
    else:
        stop = end + n if end < 0 else end
        stop = _clamp(stop, 0, n) if stride > 0 else _clamp(stop, -1, n - 1)
        if emask:
            stop = n if stride > 0 else -1
    count = len(range(start, stop, stride))
    return start, count


def _slice_nodes(t, k: int, x: str, out: str, begin, step, counts, where: str) -> None:
    """slice to ``counts`` per axis, then a reshape to the file's output shape (shrunk axes)."""
    mid = out
    if tuple(counts) != tuple(t.shape(out)):
        mid = temp(t, out, "sliced", counts)
    node(t, f"slice_{k}", "slice", [x], [mid], begin=tuple(begin), step=tuple(step))
    if mid != out:
        node(t, f"reshape_{k}", "reshape", [mid], [out], shape=tuple(t.shape(out)))


@tflite_op('STRIDED_SLICE', inputs=4)
def lower_strided_slice(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    x = ins[0]
    xs = t.shape(x)
    rank = _rank_ok(t, x, where)
    b, e, s = (const(t, ins[i], what, where).reshape(-1) for i, what in ((1, "begin"), (2, "end"), (3, "strides")))
    if not b.size == e.size == s.size <= rank:
        raise t.r.bad(f"{where}: begin / end / strides of {b.size}, {e.size}, {s.size} entries for a {rank}-D input")
    o = t._options(op, t.tfl.StridedSliceOptions)
    bm, em, sm = (int(o.BeginMask()), int(o.EndMask()), int(o.ShrinkAxisMask())) if o is not None else (0, 0, 0)
    if o is not None and (int(o.EllipsisMask()) or int(o.NewAxisMask()) or bool(o.Offset())):
        raise UnsupportedError("STRIDED_SLICE with an ellipsis mask, a new-axis mask or offset=true", where=where,
                               fix="Slice with begin / end / strides and begin, end and shrink masks (as TFLM runs)")
    if np.any(s == 0):
        raise t.r.bad(f"{where}: a stride of 0")
    starts, steps, counts = [], [], []
    for i in range(rank):  # axes past the operands' length: the whole axis (TFLM pads the indices)
        if i < b.size:
            st, cnt = strided_axis(int(b[i]), int(e[i]), int(s[i]), xs[i], bool(bm >> i & 1), bool(em >> i & 1),
                                   bool(sm >> i & 1))
            starts.append(st)
            steps.append(int(s[i]))
        else:
            st, cnt = 0, xs[i]
            starts.append(0)
            steps.append(1)
        counts.append(cnt)
    kept = [c for i, c in enumerate(counts) if not (i < b.size and sm >> i & 1)]
    if tuple(kept) != tuple(t.shape(outs[0])) or 0 in counts:
        raise t.r.bad(f"{where}: strided slice of {list(xs)} gives {kept}, the file says {list(t.shape(outs[0]))}")
    _slice_nodes(t, k, x, outs[0], starts, steps, counts, where)


@tflite_op('SLICE', inputs=3)
def lower_slice(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    x = ins[0]
    xs = t.shape(x)
    rank = _rank_ok(t, x, where)
    b, size = const(t, ins[1], "begin", where).reshape(-1), const(t, ins[2], "size", where).reshape(-1)
    if b.size != rank or size.size != rank:
        raise t.r.bad(f"{where}: begin / size of {b.size}, {size.size} entries for a {rank}-D input")
    counts = [int(xs[i] - b[i]) if size[i] == -1 else int(size[i]) for i in range(rank)]
    if any(b[i] < 0 or counts[i] < 1 or b[i] + counts[i] > xs[i] for i in range(rank)) \
            or tuple(counts) != tuple(t.shape(outs[0])):
        raise t.r.bad(f"{where}: slice of {list(xs)} from {b.tolist()} size {size.tolist()}")
    _slice_nodes(t, k, x, outs[0], [int(v) for v in b], [1] * rank, counts, where)


def _split(t, k: int, x: str, outs: list[str], axis: int, where: str) -> None:
    xs = t.shape(x)
    rank = _rank_ok(t, x, where)
    if not -rank <= axis < rank:
        raise t.r.bad(f"{where}: axis {axis} for a {rank}-D input")
    axis %= rank
    for o in outs:
        os_ = t.shape(o)
        if len(os_) != rank or any(os_[i] != xs[i] for i in range(rank) if i != axis):
            raise t.r.bad(f"{where}: output {list(os_)} is not a part of {list(xs)} along axis {axis}")
    if sum(t.shape(o)[axis] for o in outs) != xs[axis]:
        raise t.r.bad(f"{where}: outputs do not add up to axis {axis} of {list(xs)}")
    node(t, f"split_{k}", "split", [x], outs, axis=axis)


@tflite_op('SPLIT', inputs=2)
def lower_split(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """SPLIT(axis, input): equal parts."""
    axis = const(t, ins[0], "split axis", where).reshape(-1)
    if axis.size != 1:
        raise t.r.bad(f"{where}: the axis must be one value")
    _split(t, k, ins[1], outs, int(axis[0]), where)


@tflite_op('SPLIT_V', inputs=3)
def lower_split_v(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """SPLIT_V(input, size_splits, axis): the output shapes carry the sizes."""
    axis = const(t, ins[2], "split axis", where).reshape(-1)
    if axis.size != 1:
        raise t.r.bad(f"{where}: the axis must be one value")
    _split(t, k, ins[0], outs, int(axis[0]), where)


@tflite_op('PACK', inputs=1)
def lower_pack(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """The inputs stacked along a new axis: each reshaped (an alias) to have it, then concatenated."""
    ins = [i for i in ins if i]
    ys = t.shape(outs[0])
    o = t._options(op, t.tfl.PackOptions)
    axis = int(o.Axis()) if o is not None else 0
    if not -len(ys) <= axis < len(ys):
        raise t.r.bad(f"{where}: axis {axis} for a {len(ys)}-D output")
    axis %= len(ys)
    want = tuple(ys[:axis]) + (1,) + tuple(ys[axis + 1:])
    if ys[axis] != len(ins) or any(tuple(t.shape(i)) != want[:axis] + want[axis + 1:] for i in ins):
        raise t.r.bad(f"{where}: {len(ins)} inputs do not pack into {list(ys)}")
    if len(ys) > MAX_DIMS:
        raise UnsupportedError(f"a {len(ys)}-D tensor", where=where)
    parts = []
    for j, i in enumerate(ins):
        p = temp(t, i, f"packed{k}_{j}", want)
        node(t, f"pack_{k}_reshape{j}", "reshape", [i], [p], shape=want)
        parts.append(p)
    node(t, f"pack_{k}", "concat", parts, outs[:1], axis=axis)


@tflite_op('UNPACK', inputs=1)
def lower_unpack(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """The input cut along an axis into slices of 1 (a split), each reshaped without the axis."""
    x = ins[0]
    xs = t.shape(x)
    rank = _rank_ok(t, x, where)
    o = t._options(op, t.tfl.UnpackOptions)
    axis = int(o.Axis()) if o is not None else 0
    if not -rank <= axis < rank:
        raise t.r.bad(f"{where}: axis {axis} for a {rank}-D input")
    axis %= rank
    part = tuple(xs[:axis]) + (1,) + tuple(xs[axis + 1:])
    if len(outs) != xs[axis] or any(tuple(t.shape(y)) != part[:axis] + part[axis + 1:] for y in outs):
        raise t.r.bad(f"{where}: {len(outs)} outputs do not unpack {list(xs)} along axis {axis}")
    parts = [temp(t, y, "unpacked", part) for y in outs]
    node(t, f"unpack_{k}", "split", [x], parts, axis=axis)
    for j, (p, y) in enumerate(zip(parts, outs)):
        node(t, f"unpack_{k}_reshape{j}", "reshape", [p], [y], shape=tuple(t.shape(y)))


@tflite_op('DEPTH_TO_SPACE', 'SPACE_TO_DEPTH', inputs=1)
def lower_depth_space(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """A reshape to 6-D (aliases), one transpose of the block axes, a reshape back: TF's NHWC rule
    ``out[b, h*s + i, w*s + j, c] = in[b, h, w, (i*s + j)*C + c]`` (and its inverse)."""
    x, y = ins[0], outs[0]
    xs, ys = t.shape(x), t.shape(y)
    to_space = code == t.tfl.BuiltinOperator.DEPTH_TO_SPACE
    o = t._options(op, t.tfl.DepthToSpaceOptions if to_space else t.tfl.SpaceToDepthOptions)
    s = int(o.BlockSize()) if o is not None else 0
    if len(xs) != 4 or s < 1:
        raise t.r.bad(f"{where}: block size {s} of a {len(xs)}-D input")
    n, h, w, c = xs
    if to_space:
        ok = c % (s * s) == 0 and tuple(ys) == (n, h * s, w * s, c // (s * s))
        six, mid = (n, h, w, s, s, c // (s * s)), (n, h, s, w, s, c // (s * s))
    else:
        ok = h % s == 0 and w % s == 0 and tuple(ys) == (n, h // s, w // s, c * s * s)
        six, mid = (n, h // s, s, w // s, s, c), (n, h // s, w // s, s, s, c)
    if not ok:
        raise t.r.bad(f"{where}: block size {s} does not turn {list(xs)} into {list(ys)}")
    a, b = temp(t, x, f"blocks{k}", six), temp(t, y, f"blocks{k}", mid)
    node(t, f"depth_space_{k}_in", "reshape", [x], [a], shape=six)
    node(t, f"depth_space_{k}", "transpose", [a], [b], perm=(0, 1, 3, 2, 4, 5))
    node(t, f"depth_space_{k}_out", "reshape", [b], [y], shape=tuple(ys))


@tflite_op('SQUEEZE', 'EXPAND_DIMS', inputs=1)
def lower_squeeze(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """reshape (an alias) to the output's shape."""
    if int(np.prod(t.shape(ins[0]))) != int(np.prod(t.shape(outs[0]))):
        raise t.r.bad(f"{where}: {list(t.shape(ins[0]))} -> {list(t.shape(outs[0]))} changes the size")
    node(t, f"reshape_{k}", "reshape", ins[:1], outs[:1], shape=tuple(t.shape(outs[0])))


@tflite_op('GATHER', inputs=2)
def lower_gather(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    """gather along an axis with constant indices (batch_dims 0)."""
    x = ins[0]
    xs = t.shape(x)
    rank = _rank_ok(t, x, where)
    idx = const(t, ins[1], "gather indices tensor", where)
    o = t._options(op, t.tfl.GatherOptions)
    axis, bd = (int(o.Axis()), int(o.BatchDims())) if o is not None else (0, 0)
    if bd:
        raise UnsupportedError(f"GATHER with batch_dims={bd}", where=where, fix="Gather with batch_dims 0")
    if not -rank <= axis < rank:
        raise t.r.bad(f"{where}: axis {axis} for a {rank}-D input")
    axis %= rank
    if idx.size and (idx.min() < 0 or idx.max() >= xs[axis]):
        raise UnsupportedError(f"GATHER indices outside [0, {xs[axis]})", where=where,
                               fix="Use indices within the axis (TFLM does not take negative ones)")
    if tuple(xs[:axis]) + idx.shape + tuple(xs[axis + 1:]) != tuple(t.shape(outs[0])):
        raise t.r.bad(f"{where}: gather of {list(xs)} by indices {list(idx.shape)} is not {list(t.shape(outs[0]))}")
    iname = f"{outs[0]}__indices"
    t.tensors[iname] = ir.Tensor(iname, idx.shape, "int32", None, idx.astype(np.int32))
    node(t, f"gather_{k}", "gather", [x, iname], outs[:1], axis=axis)
