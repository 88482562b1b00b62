"""Layers that move bytes without arithmetic, whatever their type: reshape (an alias), concat,
transpose, slice, broadcast, split, pad and gather.

Transposes, slices, broadcasts and the parts of a split are one kernel, ``ec_strided_copy``: the
output written in order, each element read at an affine input offset.  Its parameters are
simplified at compile time (:func:`coalesce`): output axes that read consecutive input memory
merge, so the innermost axis is as long a contiguous run (one memcpy) as the op allows.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from .... import ir
from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel

MAX_DIMS = 6  # EC_DATA_MAX_DIMS
PAD_MODES = {"constant": "EC_PAD_CONSTANT", "edge": "EC_PAD_EDGE", "reflect": "EC_PAD_REFLECT"}


@kernel("(alias)", "reshape", "any")
def emit_reshape(gen, L, k) -> str:
    """A reshape is planned as an alias of its input: no code."""
    if gen.plan.offsets[L.x.name] != gen.plan.offsets[L.out.name]:
        raise AssertionError("reshape is planned as an alias")
    L.head.append("  an alias of its input: no code")
    return f"/* {gen.tensor(L.out.name)} is {gen.tensor(L.x.name)} */"


@kernel("ec_concat_part", "concat", "any")
def emit_concat(gen, L, k) -> str:
    """Inputs of one quantization copied side by side along the axis (one copy call per input)."""
    node, out = L.node, L.out
    axis = int(node.attrs["axis"])
    eb = ir.dtype_bytes(out.dtype)
    outer = int(math.prod(out.shape[:axis]))
    out_bytes = int(math.prod(out.shape[axis:])) * eb
    calls, off = [], 0
    for name in node.inputs:
        t = gen.g.tensors[name]
        if t.is_const:
            raise UnsupportedError("concat of a constant", where=f"node {node.name!r}")
        if t.dtype != out.dtype:
            raise UnsupportedError("concat of different types", where=f"node {node.name!r}")
        in_bytes = int(math.prod(t.shape[axis:])) * eb
        calls.append(f"ec_concat_part({gen.tensor(out.name)}, {gen.tensor(name)}, {outer}, {in_bytes}, "
                     f"{out_bytes}, {off});")
        off += in_bytes
    return "\n    ".join(calls)


def strides(shape) -> list[int]:
    """Row-major element strides of ``shape``."""
    return [int(math.prod(shape[k + 1:])) for k in range(len(shape))]


def coalesce(dims: list[int], in_strides: list[int]) -> tuple[list[int], list[int]]:
    """The same strided copy with fewer axes: unit axes dropped, and output axes k, k + 1 merged
    where axis k's input stride is axis k + 1's times its size (they read one run of memory).

    >>> coalesce([1, 4, 5, 3], [60, 15, 3, 1])    # a contiguous copy: one run
    ([60], [1])
    >>> coalesce([2, 4, 3], [12, 1, 4])           # transpose (0, 2, 1) of [2, 3, 4]: nothing merges
    ([2, 4, 3], [12, 1, 4])
    >>> coalesce([2, 2, 3, 8], [48, 8, 16, 1])    # depth-to-space's transpose: 8-element runs
    ([2, 2, 3, 8], [48, 8, 16, 1])
    """
    d, s = [], []
    for n, st in zip(dims, in_strides):
        if n == 1:
            continue
        if d and s[-1] == st * n:
            d[-1] *= n
            s[-1] = st
        else:
            d.append(int(n))
            s.append(int(st))
    return (d or [1]), (s or [1])


def strided_copy(gen, L, base: str, x: ir.Tensor, out_name: str, dims, in_strides, offset: int, what: str) -> str:
    """One ec_strided_copy call (its parameter block named ``base``)."""
    d, s = coalesce(list(dims), list(in_strides))
    if len(d) > MAX_DIMS:
        raise UnsupportedError(f"{L.node.op} over {len(d)} dimensions that do not merge", where=f"node {L.node.name!r}",
                               fix=f"Keep data movement within {MAX_DIMS} dimensions")
    pad = MAX_DIMS - len(d)
    fields = [("rank", str(len(d))), ("elem_bytes", str(ir.dtype_bytes(x.dtype))), ("offset", str(int(offset))),
              ("dims", "{" + ", ".join(str(v) for v in d + [1] * pad) + "}"),
              ("in_strides", "{" + ", ".join(str(v) for v in s + [0] * pad) + "}")]
    gen.struct("ec_slice_params_t", base, fields, c_comment(f"{L.node.name}: {what}"))
    runs = int(math.prod(d[:-1]))
    L.head.append(f"  {what}: {runs} run{'s' if runs != 1 else ''} of {d[-1]} element{'s' if d[-1] != 1 else ''}"
                  + (" (contiguous)" if s[-1] == 1 else f" (input stride {s[-1]})"))
    return f"ec_strided_copy(&{base}, {gen.tensor(x.name)}, {gen.tensor(out_name)});"


@kernel("ec_strided_copy", "transpose", "any", groups=("data",))
def emit_transpose(gen, L, k) -> str:
    """Axes permuted: the output written in order, each element read at its input place."""
    node, x, out = L.node, L.x, L.out
    perm = [int(v) for v in node.attrs["perm"]]
    if sorted(perm) != list(range(len(x.shape))):
        raise UnsupportedError(f"transpose {perm} of a {len(x.shape)}-D tensor", where=f"node {node.name!r}")
    st = strides(x.shape)
    return strided_copy(gen, L, L.base, x, out.name, [x.shape[p] for p in perm], [st[p] for p in perm], 0,
                        f"transpose {perm}")


@kernel("ec_strided_copy", "slice", "any", groups=("data",))
def emit_slice(gen, L, k) -> str:
    """A strided slice: begin and step per axis (steps may be negative)."""
    node, x, out = L.node, L.x, L.out
    st = strides(x.shape)
    begin = [int(b) for b in node.attrs["begin"]]
    step = [int(s) for s in node.attrs["step"]]
    return strided_copy(gen, L, L.base, x, out.name, out.shape, [s * t for s, t in zip(step, st)],
                        sum(b * t for b, t in zip(begin, st)), f"slice from {begin} step {step}")


@kernel("ec_strided_copy", "broadcast", "any", groups=("data",))
def emit_broadcast(gen, L, k) -> str:
    """Axes of size 1 repeated (input stride 0)."""
    x, out = L.x, L.out
    st = [0 if n == 1 and m != 1 else t for n, m, t in zip(x.shape, out.shape, strides(x.shape))]
    return strided_copy(gen, L, L.base, x, out.name, out.shape, st, 0, f"broadcast to {list(out.shape)}")


@kernel("ec_strided_copy", "split", "any", groups=("data",))
def emit_split(gen, L, k) -> str:
    """Each output a slice of the input along the axis (one copy call per output)."""
    node, x = L.node, L.x
    axis = int(node.attrs["axis"])
    st = strides(x.shape)
    calls, begin = [], 0
    for j, name in enumerate(node.outputs):
        t = gen.g.tensors[name]
        base = gen.ident(f"{L.base}_part{j}")
        calls.append(strided_copy(gen, L, base, x, name, t.shape, st, begin * st[axis],
                                  f"part {j}: {t.shape[axis]} from {begin} of axis {axis}"))
        begin += t.shape[axis]
    return "\n    ".join(calls)


def pad_bits(value, dtype: str) -> int:
    """The constant's bits as ec_pad_params_t.value holds them."""
    if dtype == "float32":
        return struct.unpack("<I", struct.pack("<f", float(value)))[0]
    return int(value) & ((1 << (8 * ir.dtype_bytes(dtype))) - 1)


def pad_coalesce(in_dims, before, after, mode: str):
    """Fewer axes for the same pad: an unpadded axis merges into the axis before it when that one is
    unpadded too or the padding is a constant (a padded row is then whole rows of the constant)."""
    d, b, a = [], [], []
    for n, x, y in zip(in_dims, before, after):
        if d and x == 0 and y == 0 and (mode == "constant" or (b[-1] == 0 and a[-1] == 0)):
            d[-1] *= n
            b[-1] *= n
            a[-1] *= n
        else:
            d.append(int(n))
            b.append(int(x))
            a.append(int(y))
    return d, b, a


@kernel("ec_pad", "pad", "any", groups=("data",))
def emit_pad(gen, L, k) -> str:
    """Constant, edge or reflect padding of any axes."""
    node, x, out = L.node, L.x, L.out
    mode = node.attrs.get("mode", "constant")
    pads = [(int(a), int(b)) for a, b in node.attrs["pads"]]
    if mode not in PAD_MODES or len(pads) != len(x.shape) or min(min(p) for p in pads) < 0:
        raise UnsupportedError(f"pad {pads} ({mode})", where=f"node {node.name!r}")
    d, b, a = pad_coalesce(x.shape, [p[0] for p in pads], [p[1] for p in pads], mode)
    if len(d) > MAX_DIMS:
        raise UnsupportedError(f"pad over {len(d)} dimensions", where=f"node {node.name!r}",
                               fix=f"Pad at most {MAX_DIMS} dimensions")
    value = node.attrs.get("value", 0) if mode == "constant" else 0
    pad = [0] * (MAX_DIMS - len(d))
    fields = [("rank", str(len(d))), ("elem_bytes", str(ir.dtype_bytes(x.dtype))), ("mode", PAD_MODES[mode]),
              ("value", f"0x{pad_bits(value, x.dtype):08X}u"),
              ("in_dims", "{" + ", ".join(str(v) for v in d + [1] * len(pad)) + "}"),
              ("out_dims", "{" + ", ".join(str(v + p + q) for v, p, q in zip(d, b, a)) + (", 1" * len(pad)) + "}"),
              ("before", "{" + ", ".join(str(v) for v in b + pad) + "}")]
    L.head.append(f"  pads {pads}, {mode}" + (f" {value}" if mode == "constant" else ""))
    gen.struct("ec_pad_params_t", L.base, fields, c_comment(f"{node.name}: pad"))
    return f"ec_pad(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"


@kernel("ec_gather", "gather", "any", groups=("data",))
def emit_gather(gen, L, k) -> str:
    """Slices along an axis picked by constant indices (an int32 table in flash)."""
    node, x, out = L.node, L.x, L.out
    axis = int(node.attrs["axis"])
    idx = gen.g.tensors[node.inputs[1]]
    if not idx.is_const:
        raise UnsupportedError("gather with indices computed at run time", where=f"node {node.name!r}",
                               fix="Gather with constant indices")
    data = np.asarray(idx.data, dtype=np.int64).reshape(-1)
    ind = gen.const_array(L.base, "indices", data, "int32_t", f"{node.name}: gather indices along axis {axis}")
    eb = ir.dtype_bytes(x.dtype)
    fields = [("outer", str(int(math.prod(x.shape[:axis])))), ("axis_size", str(x.shape[axis])),
              ("n_indices", str(data.size)), ("inner_bytes", str(int(math.prod(x.shape[axis + 1:])) * eb)),
              ("indices", ind)]
    L.head.append(f"  {data.size} indices along axis {axis}")
    gen.struct("ec_gather_params_t", L.base, fields, c_comment(f"{node.name}: gather"))
    return f"ec_gather(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"
