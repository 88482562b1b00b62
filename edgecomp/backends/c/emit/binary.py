"""Elementwise layers with broadcasting: add (when its operands differ in shape or one is a
constant), mul, sub, maximum, minimum, squared_difference, affine, and the squeeze-excite multiply.

The broadcast is described to the C kernels by :func:`bcast` (output axes merged where both
operands run alike, per-axis strides, 0 on a broadcast axis); constants (a per-channel scale, a
mean) become const arrays.
"""
from __future__ import annotations

import math

import numpy as np

from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_int

MAX_DIMS = 6  # EC_BCAST_MAX_DIMS
OPCODE = {"add": "EC_BINARY_ADD", "sub": "EC_BINARY_SUB", "mul": "EC_BINARY_MUL", "maximum": "EC_BINARY_MAXIMUM",
          "minimum": "EC_BINARY_MINIMUM", "squared_difference": "EC_BINARY_SQUARED_DIFFERENCE"}


def bcast(out: tuple, a: tuple, b: tuple, where: str) -> tuple[list[int], list[int], list[int]]:
    """(dims, a strides, b strides) of the broadcast of a and b to ``out`` (numpy's rules, shapes
    right-aligned), with unit axes dropped and neighbouring axes merged where both operands continue
    alike.

    >>> bcast((2, 4, 5, 3), (2, 4, 5, 3), (2, 1, 1, 3), "")
    ([2, 20, 3], [60, 3, 1], [3, 0, 1])
    >>> bcast((3, 5), (3, 5), (), "")
    ([15], [1], [0])
    """
    r = len(out)
    if len(a) > r or len(b) > r:
        raise UnsupportedError("an operand of higher rank than the output", where=where)
    a, b = (1,) * (r - len(a)) + tuple(a), (1,) * (r - len(b)) + tuple(b)

    def strides(s):
        st = [int(math.prod(s[i + 1:])) for i in range(r)]
        return [0 if s[i] == 1 and out[i] != 1 else st[i] for i in range(r)]
    sa, sb = strides(a), strides(b)
    axes = [(int(out[i]), sa[i], sb[i]) for i in range(r) if out[i] != 1]
    merged: list[list[int]] = []
    for d, x, y in axes:
        if merged:
            pd, px, py = merged[-1]
            if px == x * d and py == y * d:  # the previous axis continues this one in both operands
                merged[-1] = [pd * d, x, y]
                continue
        merged.append([d, x, y])
    if not merged:
        merged = [[1, 0, 0]]
    if len(merged) > MAX_DIMS:
        raise UnsupportedError(f"a broadcast over {len(merged)} axes that do not merge", where=where,
                               fix=f"Use at most {MAX_DIMS} dimensions")
    return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]


def bcast_init(dims, sa, sb) -> str:
    pad = MAX_DIMS - len(dims)

    def arr(v, fill):
        return "{" + ", ".join(str(int(x)) for x in list(v) + [fill] * pad) + "}"
    return (f"{{ .rank = {len(dims)}, .dims = {arr(dims, 1)}, .a_strides = {arr(sa, 0)}, "
            f".b_strides = {arr(sb, 0)} }}")


def operand(gen, L, idx: int, ctype: str) -> str:
    """A node's input ``idx``: its arena tensor, or its constant as a const array."""
    t = gen.g.tensors[L.node.inputs[idx]]
    if t.is_const:
        return gen.const_array(L.base, f"operand{idx}", t.data, ctype,
                               f"{L.node.name}: constant operand {t.name} {list(t.shape)}")
    return gen.tensor(t.name)


def _needs_bcast(gen, node) -> bool:
    g = gen.g
    a, b = (g.tensors[i] for i in node.inputs[:2])
    return a.shape != b.shape or a.is_const or b.is_const


def _q_fields(q: dict | None, lo: str, hi: str, flo: str, fhi: str) -> str:
    keys = ("left_shift", "input1_offset", "input2_offset", "output_offset", "input1_multiplier", "input1_shift",
            "input2_multiplier", "input2_shift", "output_multiplier", "output_shift")
    f = [f".{k} = {c_int(q.get(k, 0))}" for k in keys] if q is not None else []
    f += [f".act_min = {lo}", f".act_max = {hi}", f".act_min_f = {flo}", f".act_max_f = {fhi}"]
    return "{ " + ", ".join(f) + " }"


@kernel("ec_binary_s8", ("add",), "int8", applies=_needs_bcast, groups=("binary",), rank=50)
@kernel("ec_binary_f32", ("add",), "float32", applies=_needs_bcast, groups=("binary",), rank=50)
@kernel("ec_binary_s8", ("mul", "sub", "maximum", "minimum", "squared_difference"), "int8", groups=("binary",))
@kernel("ec_binary_f32", ("mul", "sub", "maximum", "minimum", "squared_difference"), "float32", groups=("binary",))
def emit_binary(gen, L, k) -> str:
    """a (op) b with broadcasting: TFLM's element function at every broadcast index."""
    node, out = L.node, L.out
    a, b = (gen.g.tensors[i] for i in node.inputs[:2])
    where = f"node {node.name!r}"
    dims, sa, sb = bcast(out.shape, a.shape, b.shape, where)
    lo, hi, flo, fhi = gen.act(node, out)
    q = gen.q(node) if L.s8 and node.op not in ("maximum", "minimum") else None
    ctype = "int8_t" if L.s8 else "float"
    pa, pb = operand(gen, L, 0, ctype), operand(gen, L, 1, ctype)
    fields = [("op", OPCODE[node.op]), ("q", _q_fields(q, lo, hi, flo, fhi)), ("bc", bcast_init(dims, sa, sb))]
    if a.shape != b.shape:
        L.head.append(f"  broadcast {list(a.shape)} with {list(b.shape)}: {len(dims)} merged axes {dims}")
    gen.struct("ec_binary_params_t", L.base, fields, c_comment(f"{node.name}: {node.op}"))
    return f"{k.name}(&{L.base}, {pa}, {pb}, {gen.tensor(out.name)});"


def channel_scale(gen, node) -> tuple[int, int, int, int] | None:
    """(full operand index, batches, pixels, channels) when an int8 mul scales every channel of each
    pixel: [N, ..., C] * [N or 1, 1, ..., 1, C] (squeeze-excite), its requantization a right shift of
    1..23 and no clamp beyond int8; else None."""
    g = gen.g
    out = g.tensors[node.outputs[0]]
    ts = [g.tensors[i] for i in node.inputs[:2]]
    if node.op != "mul" or out.dtype != "int8" or any(t.dtype != "int8" for t in ts) or len(out.shape) < 2:
        return None
    q = node.attrs.get("q")
    act = node.attrs.get("act")
    if q is None or not -23 <= int(q["output_shift"]) <= -1 or (act is not None and tuple(act) != (-128, 127)):
        return None
    for full in (0, 1):
        x, s = ts[full], ts[1 - full]
        if tuple(x.shape) != tuple(out.shape) or x.is_const:
            continue
        ss = (1,) * (len(out.shape) - len(s.shape)) + tuple(s.shape)
        c = out.shape[-1]
        if ss[-1] != c or any(d != 1 for d in ss[1:-1]) or ss[0] not in (1, out.shape[0]) or c < 4:
            continue
        batches = out.shape[0] if ss[0] != 1 else 1
        return full, batches, out.size // (batches * c), c
    return None


@kernel("ec_mul_s8_channel_scale", "mul", "int8", groups=("binary_dsp",), rank=10,
        applies=lambda gen, n: gen.dsp and channel_scale(gen, n) is not None)
def emit_channel_scale(gen, L, k) -> str:
    """The squeeze-excite multiply: each pixel's channels times the channel scales (DSP, 8
    instructions an element)."""
    node, out = L.node, L.out
    full, batches, pixels, channels = channel_scale(gen, node)
    q = gen.q(node)
    xo, so = (q["input1_offset"], q["input2_offset"]) if full == 0 else (q["input2_offset"], q["input1_offset"])
    fields = [("batches", batches), ("pixels", pixels), ("channels", channels), ("x_offset", c_int(xo)),
              ("s_offset", c_int(so)), ("output_offset", c_int(q["output_offset"])),
              ("multiplier", c_int(q["output_multiplier"])), ("right_shift", -int(q["output_shift"]))]
    L.head.append(f"  {pixels} pixels x {channels} channels, a scale per channel")
    gen.struct("ec_mul_cs_params_t", L.base, [(f, str(v)) for f, v in fields], c_comment(f"{node.name}: mul"))
    px, ps = operand(gen, L, full, "int8_t"), operand(gen, L, 1 - full, "int8_t")
    return f"{k.name}(&{L.base}, {px}, {ps}, {gen.tensor(out.name)});"


@kernel("ec_affine_s8", "affine", "int8", groups=("binary",))
@kernel("ec_affine_f32", "affine", "float32", groups=("binary",))
def emit_affine(gen, L, k) -> str:
    """x * scale + bias with constant (per-channel) scale and bias."""
    node, x, out = L.node, L.x, L.out
    sc, bi = gen.g.tensors[node.inputs[1]], gen.g.tensors[node.inputs[2]]
    if sc.shape != bi.shape or not (sc.is_const and bi.is_const):
        raise UnsupportedError("affine with non-constant or differently shaped scale and bias",
                               where=f"node {node.name!r}")
    dims, sa, sb = bcast(out.shape, x.shape, sc.shape, f"node {node.name!r}")
    lo, hi, flo, fhi = gen.act(node, out)
    if L.s8:
        q = gen.q(node)
        w = gen.const_array(L.base, "w", np.asarray(q["w"]), "int32_t", f"{node.name}: per-channel slopes")
        b = gen.const_array(L.base, "b", np.asarray(q["b"]), "int32_t", f"{node.name}: per-channel offsets")
        fields = [("input_offset", c_int(q["input_offset"])), ("output_offset", c_int(q["output_offset"])),
                  ("multiplier", c_int(q["multiplier"])), ("shift", c_int(q["shift"])), ("w", w), ("b", b),
                  ("scale", "NULL"), ("bias", "NULL")]
    else:
        s = gen.const_array(L.base, "scale", sc.data, "float", f"{node.name}: scale")
        b = gen.const_array(L.base, "bias", bi.data, "float", f"{node.name}: bias")
        fields = [("w", "NULL"), ("b", "NULL"), ("scale", s), ("bias", b)]
    fields += [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi),
               ("bc", bcast_init(dims, sa, sb))]
    L.head.append(f"  x * scale + bias, constants {list(sc.shape)}")
    gen.struct("ec_affine_params_t", L.base, fields, c_comment(f"{node.name}: affine"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"

