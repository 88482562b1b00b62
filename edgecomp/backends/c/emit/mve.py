"""What the Helium (MVE) kernels' calls need beyond the reference kernels' parameter blocks: the
filter packed at compile time (``kernels/packing.py``: groups of output channels, each headed by
its folded bias and requantization vectors) and the layer's arena workspace.

The kernels themselves are registered beside their reference kernels (``conv.py``,
``fully_connected.py``, ``pooling.py``, ``elementwise.py``) with :func:`marked` as their
``applies``: the kernel planner (``kernel_plan.mark_mve``) decided which layers they run, so the
memory plan already holds their workspaces.
"""
from __future__ import annotations

import numpy as np

from .... import ir
from .gemm import row_variants
from ..kernels.packing import MVE_DW3X3_LANES, pack_conv_mve, pack_depthwise_mve, pack_fc_mve
from ..kernels.predicates import mve_dw3x3_ok
from ..literals import fmt_q, shape_text

GROUPS = ("mve",)
RANK = 3  # before every other optimized kernel of the same op (they rank 5 and up)


def marked(gen, node: ir.Node) -> bool:
    """The layer runs a Helium kernel (``kernel_plan.mark_mve``: a core with MVE, the kernel's
    predicate in ``kernels/predicates.py``)."""
    return bool(node.attrs.get("mve"))


def dw3x3(gen, node: ir.Node) -> bool:
    """The depthwise layer takes the Helium 3x3 fast path (``predicates.mve_dw3x3_ok``)."""
    return marked(gen, node) and mve_dw3x3_ok(gen.g, node)


def packed_filter(gen, node: ir.Node, fast3x3: bool = False) -> str:
    """The layer's filter packed for its Helium kernel, as a 16-byte aligned const array (``fast3x3``:
    the depthwise 3x3 fast path's lane order)."""
    g = gen.g
    w = g.tensors[node.inputs[1]]
    q = gen.q(node)
    bias = g.tensors[node.inputs[2]].data if len(node.inputs) > 2 else None
    n = w.shape[3] if node.op == "depthwise_conv2d" else w.shape[0]
    mult = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,))
    shift = np.broadcast_to(np.asarray(q["shift"], np.int64), (n,))
    pack, what = {"conv2d": (pack_conv_mve, "groups of 3 output channels, 16 taps at a time"),
                  "depthwise_conv2d": (pack_depthwise_mve, "groups of 16 channels, one tap at a time"),
                  "fully_connected": (pack_fc_mve, "groups of 6 output rows, 16 inputs at a time")}[node.op]
    if fast3x3:
        data = pack_depthwise_mve(w.data, bias, int(q["input_offset"]), mult, shift, MVE_DW3X3_LANES)
        what += ", the 3x3 fast path's lane order"
    else:
        data = pack(w.data, bias, int(q["input_offset"]), mult, shift)
    note = (f"{node.name}: filter {w.name} {shape_text(w.shape)} {fmt_q(w)}, packed for the Helium kernel "
            f"({what}), each group headed by its bias + input_offset * sum(filter), multipliers and shifts")
    return gen.const_array(gen.ident_base, "filter_mve", data, "int8_t", note, align=16)


def workspace(gen, L) -> str:
    """The layer's workspace in the arena (``NULL`` when its kernel needs none)."""
    ws = gen.plan.workspace.get(L.node.name)
    if ws is None:
        return "NULL"
    L.head.append(f"  Helium kernel workspace: {ws[1]} bytes at {ws[0]}")
    return f"(int8_t *)(arena.bytes + {ws[0]})"


def row_fusion(gen, L, conv_fields, filt: str) -> str:
    """Row fusion with the Helium convolution (``kernel_plan.find_row_fusions``; as ``gemm.row_fusion``):
    A's call is deferred; B's is a loop over output rows that computes A's rows into a 3-row buffer
    just ahead of B's, each call one output row (``ec_conv_params_t`` variants for the first,
    middle and last rows), B's skip operand the row of A's input it may be written over."""
    node, x, out, head = L.node, L.x, L.out, L.head
    work = workspace(gen, L)
    if node.name in gen.fused:  # A: remember, run inside B
        gen.fused_a[node.name] = dict(x=x, filt=filt, work=work, rows=row_variants(gen, L.base, conv_fields, node.name))
        head.append(f"  computed row by row inside the next layer (its output: a {gen.fused[node.name]}-byte "
                    "buffer of 3 rows)")
        return "/* (inside the next layer) */"
    a = gen.fused_a[gen.fused_b[node.name]]
    ra, rb = a["rows"], row_variants(gen, L.base, conv_fields, node.name)
    h, w = out.shape[1], out.shape[2]
    xrow, yrow, zrow = w * a["x"].shape[3], w * x.shape[3], w * out.shape[3]
    X, Y, Z = gen.tensor(a["x"].name), gen.tensor(x.name), gen.tensor(out.name)
    head.append(f"  Helium kernel (MVE), fused with the previous layer row by row: its rows {Y} in a 3-row "
                f"buffer, the residual add's operand {X}")

    def call_a(v: str, src: str, dst: str) -> str:
        return f"ec_conv2d_s8_mve(&{ra[v]}, {src}, {a['filt']}, {dst}, NULL, NULL, {a['work']});"

    def call_b(v: str, r: str) -> str:
        return (f"ec_conv2d_s8_mve(&{rb[v]}, {Y}, {filt}, {Z} + {r} * {zrow}, NULL, {X} + {r} * {xrow}, "
                f"{work});")
    return "\n    ".join([
        "{",
        f"    {call_a('top', X, Y)}",
        f"    {call_a('mid', X, f'{Y} + {yrow}')}",
        f"    {call_b('top', '0')}",
        f"    for (int32_t r = 1; r < {h - 1}; r++) {{",
        f"        ec_conv2d_s8_mve(r + 1 < {h - 1} ? &{ra['mid']} : &{ra['bot']}, {X} + r * {xrow}, {a['filt']}, "
        f"{Y} + {2 * yrow}, NULL, NULL, {a['work']});",
        f"        {call_b('mid', 'r')}",
        f"        memmove({Y}, {Y} + {yrow}, {2 * yrow});",
        "    }",
        f"    {call_b('bot', str(h - 1))}",
        "}"])
