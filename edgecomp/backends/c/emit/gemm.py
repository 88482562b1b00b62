"""The matrix-product convolution's parameter block (``ec_gemm_params_t``) and row fusion.

Called by the convolution emitter (``conv.py``) for a layer the kernel planner gave a
:class:`~edgecomp.backends.c.kernel_plan.GemmLayout`: the constant addresses (packed filter,
folded bias, scratch row, skip tensor, workspace, widened-weights buffer, rescale tables,
requantization table) go into the layer's ``ec_gemm_params_t``, so a call passes four arguments.
"""
from __future__ import annotations

import numpy as np

from ....sanitize import c_comment
from ..kernel_plan import GemmLayout, _tiled, gemm_live
from ..kernels.packing import dead_channel_row, folded_bias, fused_store_table, store_constants
from ..kernels.predicates import GEMM_ADD_TABLE_BYTES, gemm_acc_ok, gemm_fast_requant, residual_run_ok


def wbuf(gen, name: str, lay: GemmLayout) -> str:
    """The address of a layer's widened-weights buffer: in its workspace before the tables, or in
    the row-fused second layer's."""
    if not lay.wtile:
        return "NULL"
    owner = lay.wbuf_in or name
    own = gen.gemm[owner]
    ws_off, ws_bytes = gen.plan.workspace[owner]
    off = ws_off + ws_bytes - (GEMM_ADD_TABLE_BYTES if own.tables else 0) - own.wbuf_bytes
    return f"(uint32_t *)(arena.bytes + {off})"


def store_fused(gen, node, lay: GemmLayout, live, act: tuple[str, str]) -> bool:
    """Whether a layer's block products store their own outputs (ec_gemm16_2x4_rq, --optimize speed):
    weights in flash, the one-multiply requantization with the per-channel table (as ec_gemm_store2k:
    the activation range [-128, 127], accumulators below 2^30), no residual add, every channel
    computed, one block, and an even number of channel pairs in every call (whole quads).  Its
    weights are then stored doubled and its folded bias, doubled, in the store's table
    (fused_store_table; the accumulators are 2a); the layer calls ec_conv2d_s8_gemm_rq."""
    if not lay.wflash or lay.nb != 1 or live is not None or node.attrs.get("residual") or act != ("-128", "127"):
        return False
    n = gen.g.tensors[node.outputs[0]].shape[3]
    pairs = (n + 1) // 2
    return n % 4 == 0 and (lay.chunk % 2 == 0 or lay.chunk >= pairs) \
        and gemm_fast_requant(gen.q(node), None, n) and gemm_acc_ok(gen.g, node)


def doubled_bias(gen, node, n: int) -> np.ndarray:
    """The folded bias doubled, wrapped to int32 as the kernel's sums wrap (ec_gemm16_2x4_rq's
    accumulators start from it: they are 2a)."""
    folded = folded_bias(gen.g, node, gen.q(node)["input_offset"], n).astype(np.int64)
    return (2 * folded + (1 << 31)) % (1 << 32) - (1 << 31)


def gemm16_names(gen) -> tuple[str, str]:
    """The 2x4 block products' entry points of a model (--optimize speed), without and with the
    fused store: the one-pass variant (..._1, 8 cycles fewer a quad) where every layer of the kind
    has at most 64 taps, else the one that loops over passes for all: one loop of each kind is
    linked (about 1.9 KiB each)."""
    if getattr(gen, "_gemm16_names", None) is None:
        kinds: dict[bool, list[bool]] = {False: [], True: []}
        for node in gen.g.nodes:
            lay = gen.gemm.get(node.name)
            if lay is not None and lay.wflash:
                act = gen.act(node, gen.g.tensors[node.outputs[0]])[:2]
                kinds[store_fused(gen, node, lay, gemm_live(gen.g, node), act)].append(lay.kbp <= 64)
        gen._gemm16_names = ("ec_gemm16_2x4_1" if all(kinds[False]) else "ec_gemm16_2x4",
                             "ec_gemm16_2x4_rq1" if all(kinds[True]) else "ec_gemm16_2x4_rq")
    return gen._gemm16_names


def emit_gemm(gen, L, lay: GemmLayout, live, q: dict, conv_fields, filt: str, bias: str, skip: str,
              wflash: str, act: tuple[str, str], fused: bool) -> str:
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    a = node.attrs
    res = a.get("residual")
    kh, kw = gen.g.tensors[node.inputs[1]].shape[1:3]
    n_oc = out.shape[3] if live is None else len(live)
    ws_off, ws_bytes = gen.plan.workspace[node.name]
    direct = 0
    if row != "NULL" and kh == 1 and kw == 1 and tuple(a.get("stride", (1, 1))) == (1, 1) \
            and tuple(a.get("pad", (0, 0, 0, 0))) == (0, 0, 0, 0) and x.shape[0] == 1 and x.shape[3] >= out.shape[3]:
        d = gen.plan.offsets[out.name] - gen.plan.offsets[x.name]
        direct = int(d <= 2 * (x.shape[3] - out.shape[3]))
    assert row == "NULL" or not _tiled(gen.g, node.name, lay), "a tiled layer must not run in place"
    fast = int(gemm_fast_requant(q, res.get("q") if res else None, out.shape[3], live)
               and gemm_acc_ok(gen.g, node, live))
    dead = [("n_live", "0"), ("live_map", "NULL"), ("dead_row", "NULL")]
    if live is not None:
        dead = [("n_live", str(len(live))),
                ("live_map", gen.const_array(gen.ident_base, "live_map", np.asarray(live), "uint16_t",
                                             f"{node.name}: the output channels computed")),
                ("dead_row", gen.const_array(gen.ident_base, "dead_row", dead_channel_row(gen.g, node, live),
                                             "int8_t", f"{node.name}: the outputs of the channels whose "
                                             "weights are all zero (their bias requantized)"))]
        head.append(f"  {out.shape[3] - len(live)} of {out.shape[3]} output channels have only zero weights: "
                    "constants, not computed")
        L.notes.append(f"{len(live)}/{out.shape[3]} channels")
    gemm_fields = [("kbp", str(lay.kbp)), ("nb", str(lay.nb)), ("chunk", str(lay.chunk)),
                   ("fast", str(fast)), ("direct", str(direct)),
                   ("wpk", filt), ("bias", bias), ("row", "NULL" if direct else row),
                   ("skip", skip), ("work", f"(int32_t *)(arena.bytes + {ws_off})"),
                   ("residual_store", "NULL" if not res else "ec_gemm_store_residual"
                    if residual_run_ok(lay, fast, out.shape[3], out.shape[2]) else "ec_gemm_store_residual_any"),
                   ("add_tables", f"(int32_t *)(arena.bytes + {ws_off + ws_bytes - GEMM_ADD_TABLE_BYTES})"
                    if lay.tables else "NULL"),
                   ("wtile", str(lay.wtile)), ("wbuf", wflash if lay.wflash else wbuf(gen, node.name, lay)),
                   ("gemm16", "NULL" if not lay.wtile
                    else gemm16_names(gen)[0] if lay.wflash
                    else "ec_gemm16_2x2_1" if lay.kbp <= 64 and gen.gemm16_one else "ec_gemm16_2x2")] + dead
    rq = "NULL"
    rq_fused = store_fused(gen, node, lay, live, act)
    if rq_fused:  # (the doubled folded bias is in the table: conv.py emits no bias array)
        table = fused_store_table(store_constants(q, n_oc), doubled_bias(gen, node, n_oc))
        rq = gen.const_array(gen.ident_base, "rq", table, "int32_t",
                             f"{node.name}: per quad of channels 2 x (bias + input_offset * sum(filter)), then per "
                             "channel M, s, (1 + 2 zp) << (s - 1) (ec_gemm16_2x4_rq)")
    elif lay.wflash and fast and not res and act == ("-128", "127") and n_oc % 2 == 0:
        rq = gen.const_array(gen.ident_base, "rq", store_constants(q, out.shape[3], live), "int32_t",
                             f"{node.name}: per channel M, s, (1 + 2 zp) << (s - 1) (ec_gemm_store2k)")
    gemm_fields += [("rq", rq), ("store2k", "NULL" if rq == "NULL" or rq_fused else "ec_gemm_store2k"),
                    ("gemm16rq", gemm16_names(gen)[1] if rq_fused else "NULL")]
    if lay.wtile:
        L.notes.append("int16 weights" + (" in flash" if lay.wflash else ""))
    if fused:
        return row_fusion(gen, L, conv_fields, gemm_fields)
    gid = gen.ident(f"{node.name}_gemm")
    gen.struct("ec_gemm_params_t", gid, gemm_fields, c_comment(f"{node.name}: matrix-product layout"))
    head.append(f"  DSP matrix product ({'2x4' if lay.wflash else '2x2'} SMLAD blocks"
                + (", the store fused" if rq_fused else "") + f"), {lay.nb} block(s) of {lay.kbp} taps, "
                f"{ws_bytes}-byte workspace at {ws_off}" + (", pixel by pixel in place" if direct else "")
                + ("" if fast else ", reference requantization"))
    if lay.wflash:
        head.append("  weights stored widened to int16 in flash (--optimize speed)")
    elif lay.wtile:
        head.append(f"  weights widened to int16 in the workspace, {lay.wtile} channel pair(s) at a time")
    call = f"{conv_fn(gemm_fields)}(&{L.base}, &{gid}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"
    if lay.tables:
        head.append("  the residual add through two 256-entry rescale tables (filled first, in the workspace)")
        call = f"ec_gemm_add_tables(&{L.base}, &{gid});\n    " + call
    return call


def conv_fn(gemm_fields: list[tuple[str, str]]) -> str:
    """The layer's C function: ec_conv2d_s8_gemm_rq where its block products store the outputs."""
    return "ec_conv2d_s8_gemm_rq" if dict(gemm_fields).get("gemm16rq", "NULL") != "NULL" else "ec_conv2d_s8_gemm"


def row_variants(gen, base: str, fields: list[tuple[str, str]], note: str) -> dict[str, str]:
    """ec_conv_params_t for one output row: first (padding above), middle, last (below)."""
    idents = {}
    for part, in_h, pad_top in (("top", 2, 1), ("mid", 3, 0), ("bot", 2, 0)):
        ident = gen.ident(f"{base}_row_{part}")
        f = [(k, {"in_h": str(in_h), "out_h": "1", "pad_top": str(pad_top)}.get(k, v)) for k, v in fields]
        gen.struct("ec_conv_params_t", ident, f, c_comment(f"{note}: one output row ({part})"))
        idents[part] = ident
    return idents


def row_fusion(gen, L, conv_fields, gemm_fields) -> str:
    """Row fusion (kernel_plan.find_row_fusions): A's call is deferred; B's is a loop over output
    rows that computes A's rows into a 3-row buffer just ahead of B's."""
    node, x, out, head = L.node, L.x, L.out, L.head
    if node.name in gen.fused:  # A: remember, run inside B
        gid = gen.ident(f"{node.name}_gemm")
        gen.struct("ec_gemm_params_t", gid, gemm_fields, c_comment(f"{node.name}: matrix-product layout"))
        gen.fused_a[node.name] = dict(x=x, gid=gid, rows=row_variants(gen, L.base, conv_fields, node.name),
                                      fn=conv_fn(gemm_fields))
        head.append(f"  computed row by row inside the next layer (its output: a {gen.fused[node.name]}-byte "
                    "buffer of 3 rows)")
        return "/* (inside the next layer) */"
    a = gen.fused_a[gen.fused_b[node.name]]
    rows_b = row_variants(gen, L.base, conv_fields, node.name)
    # B's skip operand is its own output position (the add written over A's input)
    gf = [(k, "NULL" if k in ("skip", "row") else v) for k, v in gemm_fields] + [("skip_at_output", "1")]
    gidf = gen.ident(f"{node.name}_gemm_rows")
    gen.struct("ec_gemm_params_t", gidf, gf, c_comment(f"{node.name}: matrix-product layout, row by row"))
    h, w = out.shape[1], out.shape[2]
    xrow, yrow, zrow = w * a["x"].shape[3], w * x.shape[3], w * out.shape[3]
    X, Y, Z = gen.tensor(a["x"].name), gen.tensor(x.name), gen.tensor(out.name)
    ra, rb, fa = a["rows"], rows_b, a["fn"]
    head.append(f"  fused with the previous layer row by row: its rows {Y} in a 3-row buffer, "
                f"this layer's output over {X} (the skip operand)")
    lay_b = gen.gemm[node.name]
    return "\n    ".join(([f"ec_gemm_add_tables(&{rb['mid']}, &{gidf});"] if lay_b.tables else []) + [
        "{",
        f"    {fa}(&{ra['top']}, &{a['gid']}, {X}, {Y});",
        f"    {fa}(&{ra['mid']}, &{a['gid']}, {X}, {Y} + {yrow});",
        f"    ec_conv2d_s8_gemm(&{rb['top']}, &{gidf}, {Y}, {Z});",
        f"    for (int32_t r = 1; r < {h - 1}; r++) {{",
        f"        {fa}(r + 1 < {h - 1} ? &{ra['mid']} : &{ra['bot']}, &{a['gid']}, "
        f"{X} + r * {xrow}, {Y} + {2 * yrow});",
        f"        ec_conv2d_s8_gemm(&{rb['mid']}, &{gidf}, {Y}, {Z} + r * {zrow});",
        f"        memmove({Y}, {Y} + {yrow}, {2 * yrow});",
        "    }",
        f"    ec_conv2d_s8_gemm(&{rb['bot']}, &{gidf}, {Y}, {Z} + {(h - 1) * zrow});",
        "}"])
