"""Packed-weight layers: int4 weights two per byte, or b-bit indices into a codebook (clustering).

A conv2d or fully_connected int8 layer whose node carries ``attrs["packed_weights"] =
{"bits": b, "codebook": [int8 values] or None}`` stores its filter packed (``weights.c``: one
row per output channel, ``ceil(taps * b / 8)`` bytes a row) and runs ``ec_kernels_s4``.  The
TFLite frontend sets it for INT4 weight tensors; the compression search for the layers it
chose to store in 4 bits or as clusters.  The values are the int8 values the kernels multiply
(int4: -8..7; a codebook: its entries), so the numbers are exactly those of the int8 kernels and
of TensorFlow Lite Micro on an int4 model.

    >>> pack_rows(np.array([[1, -2, 7], [-8, 0, 3]], np.int8), 4).tolist()
    [[225, 7], [8, 3]]
    >>> packed_bytes(10, 25, 4), packed_bytes(10, 25, 5, codebook=32)
    (130, 192)
"""
from __future__ import annotations

import math

import numpy as np

from .... import ir
from ....errors import ModelError, UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..kernels.packing import folded_bias
from ..literals import c_int, fmt_q, shape_text

GROUPS = ("s4",)


def packed_bytes(rows: int, taps: int, bits: int, codebook: int = 0) -> int:
    """Flash bytes of a packed filter: whole bytes per row, plus the codebook (one byte an entry)."""
    return rows * math.ceil(taps * bits / 8) + codebook


def indices(w: np.ndarray, codebook) -> np.ndarray:
    """The index of each int8 weight: its position in the codebook, or the value itself (two's
    complement bits) without one."""
    w = np.asarray(w).astype(np.int64)
    if codebook is None:
        return w
    cb = np.asarray(codebook, dtype=np.int64)
    pos = {int(v): i for i, v in enumerate(cb)}
    out = np.vectorize(lambda v: pos.get(int(v), -1), otypes=[np.int64])(w) if w.size else w
    return out


def pack_rows(idx: np.ndarray, bits: int) -> np.ndarray:
    """[rows, taps] indices -> [rows, ceil(taps * bits / 8)] bytes: a little-endian bit stream per row
    (for 4 bits, element 2j in the low nibble of byte j: TFLite's int4 packing)."""
    idx = np.asarray(idx, dtype=np.int64).reshape(idx.shape[0], -1)
    rows, taps = idx.shape
    nb = math.ceil(taps * bits / 8)
    out = np.zeros((rows, nb), dtype=np.uint8)
    mask = (1 << bits) - 1
    for i in range(taps):
        v = (idx[:, i] & mask).astype(np.uint64)
        bit = i * bits
        byte, sh = bit // 8, bit % 8
        out[:, byte] |= ((v << np.uint64(sh)) & np.uint64(0xFF)).astype(np.uint8)
        if sh + bits > 8:
            out[:, byte + 1] |= (v >> np.uint64(8 - sh)).astype(np.uint8)
    return out


def check_packed(g: ir.Graph, node: ir.Node) -> dict:
    """The node's packing, checked against its weights (every weight representable)."""
    pw = node.attrs["packed_weights"]
    bits, cb = int(pw["bits"]), pw.get("codebook")
    w = g.tensors[node.inputs[1]]
    if not 1 <= bits <= 8:
        raise ModelError(f"packed weights of {bits} bits", where=f"node {node.name!r}", fix="Use 1 to 8 bits")
    if w.data is None or w.dtype != "int8":
        raise UnsupportedError("packed weights need constant int8 weights", where=f"node {node.name!r}")
    if cb is None:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if w.data.min() < lo or w.data.max() > hi:
            raise ModelError(f"weights outside the int{bits} range [{lo}, {hi}]", where=f"node {node.name!r}",
                             fix=f"Quantize this layer to {bits} bits first")
    else:
        if len(cb) > (1 << bits) or len(cb) == 0:
            raise ModelError(f"a codebook of {len(cb)} values for {bits}-bit indices", where=f"node {node.name!r}")
        if (indices(w.data, cb) < 0).any():
            raise ModelError("weights that are not in the layer's codebook", where=f"node {node.name!r}",
                             fix="Cluster the layer's weights first (edgecomp.compress.lowbit)")
    return {"bits": bits, "codebook": None if cb is None else [int(v) for v in cb]}


def _applies(gen, node: ir.Node) -> bool:
    if not node.attrs.get("packed_weights") or "hybrid" in node.attrs or node.attrs.get("q") is None:
        return False
    g = gen.g
    w = g.tensors[node.inputs[1]]
    x, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    if w.data is None or w.dtype != "int8" or x.dtype != "int8" or out.dtype != "int8":
        return False
    if node.op == "conv2d":
        return len(w.shape) == 4 and len(x.shape) == 4 and w.shape[3] == x.shape[3]
    return len(w.shape) == 2 and not node.attrs.get("residual")


def _work_taps(g: ir.Graph) -> int:
    """Taps of the largest packed convolution of the model (the shared buffer holds 4 bytes a tap)."""
    return max([int(np.prod(g.tensors[n.inputs[1]].shape[1:])) for n in g.nodes
                if n.op == "conv2d" and n.attrs.get("packed_weights")] or [0])


def _row_buffer(gen, taps: int) -> str:
    """One static buffer for a convolution's decoded filter (as int16 pairs for SMLAD, then int8) and
    a border window: 4 bytes a tap of the largest packed conv of the model (in .bss: counted in the
    bundle's static RAM)."""
    name = "ec_s4_work"
    if getattr(gen, "_s4_row_taps", None) is None:
        gen._s4_row_taps = max(_work_taps(gen.g), taps)
        gen.params.append(f"{c_comment('one output channel decoded (SMLAD pairs, int8), a border window (packed-weight convolutions)')}"
                          f"\nstatic uint32_t {name}[{gen._s4_row_taps}];")
    return f"(int8_t *){name}"


@kernel("ec_conv2d_s4", "conv2d", "int8", rank=1, groups=GROUPS, applies=_applies)
@kernel("ec_fully_connected_s4", "fully_connected", "int8", rank=1, groups=GROUPS, applies=_applies)
def emit_packed(gen, L, k) -> str:
    """A conv2d / fully_connected layer on packed weights: its params, packed filter and call."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    g = gen.g
    w = g.tensors[node.inputs[1]]
    pw = check_packed(g, node)
    bits, cb = pw["bits"], pw["codebook"]
    rows = w.shape[0]
    taps = int(np.prod(w.shape[1:]))
    packed = pack_rows(indices(w.data, cb).reshape(rows, taps), bits)
    kind = f"int{bits}" if cb is None else f"{bits}-bit indices into a {len(cb)}-entry codebook"
    filt = gen.const_array(L.base, "filter_packed", packed.astype(np.int8).reshape(-1), "int8_t",
                           f"{node.name}: filter {w.name} {shape_text(w.shape)} {fmt_q(w)}, {kind}, "
                           f"{packed.shape[1]} bytes per output channel", align=4)
    book = gen.const_array(L.base, "codebook", np.asarray(cb, np.int8), "int8_t",
                           f"{node.name}: the {len(cb)} weight values") if cb is not None else "NULL"
    q = gen.q(node)
    # the input offset folded into the bias (sums of raw inputs) when the filter is symmetric
    fold = int(q["filter_offset"]) == 0 and folded_bias(g, node, q["input_offset"], rows) is not None \
        and tuple(node.attrs.get("dilation", (1, 1))) == (1, 1)
    pid = gen.ident(f"{node.name}_packed")
    gen.struct("ec_packed_weights_t", pid, [("indices", f"(const uint8_t *){filt}"), ("codebook", book),
                                            ("bits", str(bits)), ("row_bytes", str(packed.shape[1])),
                                            ("folded", "1" if fold else "0"),
                                            ("work_bytes", str(4 * _work_taps(g)) if node.op == "conv2d" else "0")],
               c_comment(f"{node.name}: packed filter ({kind})"))
    if fold:
        name = node.inputs[2] if len(node.inputs) > 2 else "(none)"
        bias = gen.const_array(L.base, "bias", folded_bias(g, node, q["input_offset"], rows), "int32_t",
                               f"{node.name}: bias {name} + input_offset * sum(filter)")
    else:
        bias = gen.const(node, 2, "bias", "int32_t") or "NULL"
    lo, hi, flo, fhi = gen.act(node, out)
    mi, si = gen.mult_shift(node, rows)
    offsets = [("input_offset", c_int(q["input_offset"])), ("filter_offset", c_int(q["filter_offset"])),
               ("output_offset", c_int(q["output_offset"]))]
    clamp = [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
    L.notes.append(f"{kind} weights")
    head.append(f"  weights packed: {kind} ({packed.size} bytes instead of {w.size}), act [{lo}, {hi}]")
    if node.op == "fully_connected":
        if x.size % w.shape[1] or out.size != (x.size // w.shape[1]) * rows:
            raise ModelError(f"weights {shape_text(w.shape)} do not match input {shape_text(x.shape)} and output "
                             f"{shape_text(out.shape)}", where=f"node {node.name!r}")
        fields = [("batches", x.size // w.shape[1]), ("in_features", w.shape[1]), ("out_features", rows)]
        fields += offsets + clamp + [("multiplier", mi), ("shift", si)]
        gen.struct("ec_fc_params_t", L.base, [(f, str(v)) for f, v in fields],
                   c_comment(f"{node.name}: fully_connected"))
        return f"{k.name}(&{L.base}, &{pid}, {gen.tensor(x.name)}, {bias}, {gen.tensor(out.name)}, {row});"
    a = node.attrs
    if len(out.shape) != 4 or w.shape[0] != out.shape[3]:
        raise ModelError(f"weights {shape_text(w.shape)} do not match output {shape_text(out.shape)}",
                         where=f"node {node.name!r}")
    sh, sw = a.get("stride", (1, 1))
    dh, dwl = a.get("dilation", (1, 1))
    pt, pl, _pb, _pr = a.get("pad", (0, 0, 0, 0))
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("in_c", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("out_c", out.shape[3]),
              ("kernel_h", w.shape[1]), ("kernel_w", w.shape[2]), ("stride_h", sh), ("stride_w", sw),
              ("dilation_h", dh), ("dilation_w", dwl), ("pad_top", pt), ("pad_left", pl), ("depth_multiplier", 1)]
    fields += offsets + clamp + [("multiplier", mi), ("shift", si)]
    skip = "NULL"
    res = a.get("residual")
    if res:
        if res.get("q") is None:
            raise ModelError("fused residual add without parameters", where=f"node {node.name!r}")
        rid = gen.ident(f"{node.name}_residual")
        gen.struct("ec_add_params_t", rid, gen.add_fields(res["q"], node, out, res.get("act")),
                   c_comment(f"{node.name}: fused residual add of {gen.tensor(res['tensor'])}"))
        fields.append(("residual", f"&{rid}"))
        skip = gen.tensor(res["tensor"])
        head.append(f"  + residual add of {gen.tensor(res['tensor'])} (fused)")
    gen.struct("ec_conv_params_t", L.base, [(f, str(v)) for f, v in fields], c_comment(f"{node.name}: conv2d"))
    buf = _row_buffer(gen, taps)
    return (f"{k.name}(&{L.base}, &{pid}, {gen.tensor(x.name)}, {bias}, {gen.tensor(out.name)}, {row}, {skip}, "
            f"{buf});")
