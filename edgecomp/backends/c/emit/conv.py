"""conv2d and depthwise_conv2d layers: the reference, DSP and matrix-product kernels (and the
grouped convolution's, ``ec_kernels_conv_ext``).

Every convolution kernel takes the same ``ec_conv_params_t`` (shapes, stride, dilation,
padding, offsets, clamp, per-channel multipliers and shifts, a fused residual add); the
optimized kernels differ in how their constants are laid out (a folded bias, packed or
widened weights) and in a second parameter block (the matrix product's, ``gemm.py``).
"""
from __future__ import annotations

from .... import ir
from ....errors import ModelError, UnsupportedError
from ....sanitize import c_comment
from ..kernel_plan import gemm_live
from ..kernels.catalogue import kernel
from ..kernels.packing import folded_bias, pack_gemm_weights, quad_gemm_weights, widen_gemm_weights
from ..kernels.predicates import dw_fast_ok, dw_s2_ok
from ..literals import c_int, fmt_q, shape_text
from . import gemm, mve


def _shapes_ok(gen, node: ir.Node) -> bool:
    """4-D tensors whose weights match the input and output (the emitter names what is wrong)."""
    g = gen.g
    x, out, w = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]], g.tensors[node.inputs[1]]
    if len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4 or "hybrid" in node.attrs:
        return False
    if node.op == "depthwise_conv2d":
        return w.shape[3] == x.shape[3] * int(node.attrs.get("depth_multiplier", 1)) and w.shape[3] == out.shape[3]
    return w.shape[3] == x.shape[3] and w.shape[0] == out.shape[3]


def _folds_bias(gen, node: ir.Node) -> bool:
    """The DSP and matrix-product kernels fold input_offset * sum(w) into the bias: they need a
    symmetric filter and a constant int32 bias (or none)."""
    q = node.attrs.get("q")
    if not gen.dsp or q is None or int(q["filter_offset"]) != 0 or not _shapes_ok(gen, node):
        return False
    if len(node.inputs) > 2:
        b = gen.g.tensors[node.inputs[2]]
        return b.is_const and b.dtype == "int32"
    return True


def _dw_dsp(gen, node: ir.Node) -> bool:
    q = node.attrs.get("q")
    return gen.dsp and q is not None and int(node.attrs.get("depth_multiplier", 1)) == 1 \
        and int(q["filter_offset"]) == 0 and _shapes_ok(gen, node)


def _grouped(gen, node: ir.Node) -> bool:
    return int(node.attrs.get("groups", 1)) > 1


@kernel("ec_conv2d_s8_mve", "conv2d", "int8", applies=mve.marked, groups=mve.GROUPS, rank=mve.RANK)
@kernel("ec_depthwise_conv2d_s8_mve3x3", "depthwise_conv2d", "int8", applies=mve.dw3x3, groups=mve.GROUPS,
        rank=mve.RANK - 1)
@kernel("ec_depthwise_conv2d_s8_mve", "depthwise_conv2d", "int8", applies=mve.marked, groups=mve.GROUPS, rank=mve.RANK)
@kernel("ec_conv2d_grouped_s8", "conv2d", "int8", applies=_grouped, groups=("conv_ext",), rank=5)
@kernel("ec_conv2d_grouped_f32", "conv2d", "float32", applies=_grouped, groups=("conv_ext",), rank=5)
@kernel("ec_conv2d_s8_gemm", "conv2d", "int8", applies=lambda gen, n: n.name in gen.gemm and _folds_bias(gen, n),
        groups=("dsp", "gemm"), workspace=lambda n: n.attrs["gemm"].work_bytes, packer=pack_gemm_weights, rank=10)
@kernel("ec_conv2d_s8_dsp", "conv2d", "int8", applies=_folds_bias, groups=("dsp",), rank=20)
@kernel("ec_conv2d_s8", "conv2d", "int8")
@kernel("ec_conv2d_f32", "conv2d", "float32")
@kernel("ec_depthwise_conv2d_s8_dsp3x3w", "depthwise_conv2d", "int8", groups=("dsp",), rank=9,
        applies=lambda gen, n: n.name in gen.plan.workspace and _dw_dsp(gen, n)
        and dw_fast_ok(gen.g, n, gen.plan, n.attrs.get("residual")))
@kernel("ec_depthwise_conv2d_s8_dsp3x3", "depthwise_conv2d", "int8", groups=("dsp",), rank=10,
        applies=lambda gen, n: _dw_dsp(gen, n) and dw_fast_ok(gen.g, n, gen.plan, n.attrs.get("residual")))
@kernel("ec_depthwise_conv2d_s8_dsp3x3s2", "depthwise_conv2d", "int8", groups=("dsp",), rank=20,
        applies=lambda gen, n: _dw_dsp(gen, n) and dw_s2_ok(gen.g, n, n.attrs.get("residual")))
@kernel("ec_depthwise_conv2d_s8_dsp", "depthwise_conv2d", "int8", applies=_dw_dsp, groups=("dsp",), rank=30)
@kernel("ec_depthwise_conv2d_s8", "depthwise_conv2d", "int8")
@kernel("ec_depthwise_conv2d_f32", "depthwise_conv2d", "float32")
def emit_conv(gen, L, k) -> str:
    """A convolution: ec_conv_params_t, its constants, then the chosen kernel's call."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    a = node.attrs
    if "hybrid" in a:
        raise UnsupportedError("hybrid (float activations, int8 weights) convolution", where=f"node {node.name!r}",
                               fix="Quantize the model fully to int8 or keep it float32")
    w = gen.g.tensors[node.inputs[1]]
    if len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4:
        raise ModelError("convolution tensors must be 4-D NHWC", where=f"node {node.name!r}")
    s8 = out.dtype == "int8"
    dw = node.op == "depthwise_conv2d"
    kh, kw = w.shape[1], w.shape[2]
    mult = int(a.get("depth_multiplier", 1)) if dw else 1
    groups = 1 if dw else int(a.get("groups", 1))
    if (dw and w.shape[3] != x.shape[3] * mult) or (not dw and w.shape[3] * groups != x.shape[3]) \
            or (w.shape[0 if not dw else 3] != out.shape[3]) or out.shape[3] % groups:
        raise ModelError(f"weights {shape_text(w.shape)} do not match input {shape_text(x.shape)} and output "
                         f"{shape_text(out.shape)}", where=f"node {node.name!r}")
    sh, sw = a.get("stride", (1, 1))
    dh, dwl = a.get("dilation", (1, 1))
    pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
    lay = gen.gemm[node.name] if k.name == "ec_conv2d_s8_gemm" else None
    live = gemm_live(gen.g, node) if lay is not None else None
    wflash = "NULL"
    helium = k.name.startswith("ec_") and "_mve" in k.name
    if helium:
        filt = mve.packed_filter(gen, node, fast3x3=k.name.endswith("_mve3x3"))
    elif lay is not None:
        wl = w.data if live is None else w.data[live]
        note = (f"{node.name}: filter {w.name} {shape_text(w.shape)} {fmt_q(w)}, packed for ec_kernels_gemm "
                f"(channel pairs, 4 taps at a time, {lay.nb} block(s) of {lay.kbp})"
                + ("" if live is None else f", the {len(live)} channels with non-zero weights"))
        packed = pack_gemm_weights(wl, lay.nb, lay.kbp)
        if lay.wflash:
            filt = "NULL"
            wide = quad_gemm_weights(widen_gemm_weights(packed), lay.kbp, lay.chunk)
            doubled = gemm.store_fused(gen, node, lay, live, gen.act(node, out)[:2])
            if doubled:  # (ec_gemm16_2x4_rq: 2w fits int16)
                wide = 2 * wide
            wflash = "(const uint32_t *)" + gen.const_array(gen.ident_base, "filter_wide", wide, "int16_t",
                                                            note + ", widened to int16 in quads of channels "
                                                            "(ec_gemm16_2x4, --optimize speed)"
                                                            + (", doubled (ec_gemm16_2x4_rq)" if doubled else ""),
                                                            align=8)
        else:
            filt = gen.const_array(gen.ident_base, "filter_packed", packed, "int8_t", note, align=8)
    else:
        filt = gen.const(node, 1, "filter", "int8_t" if s8 else "float")
    n_oc = out.shape[3] if live is None else len(live)  # the channels the kernel computes
    bias = None
    if k.name in ("ec_conv2d_s8_gemm", "ec_conv2d_s8_dsp"):  # bias + input_offset * sum(filter)
        folded = folded_bias(gen.g, node, gen.q(node)["input_offset"], out.shape[3])
        if live is not None:  # the computed channels only (gemm_live)
            folded = folded[live]
        pad_to = 2 * ((n_oc + 1) // 2) if lay else 0
        if pad_to > len(folded):
            folded = list(folded) + [0] * (pad_to - len(folded))
        name = node.inputs[2] if len(node.inputs) > 2 else "(none)"
        if lay is not None and gemm.store_fused(gen, node, lay, live, gen.act(node, out)[:2]):
            bias = "NULL"  # (doubled, in the store's table: gemm.doubled_bias, fused_store_table)
        else:
            bias = gen.const_array(gen.ident_base, "bias", folded, "int32_t",
                                   f"{node.name}: bias {name} + input_offset * sum(filter), for the DSP kernel")
    if not helium:  # (the Helium kernels' bias is in their packed filter)
        bias = bias or gen.const(node, 2, "bias", "int32_t" if s8 else "float") or "NULL"
    res = a.get("residual")
    lo, hi, flo, fhi = gen.act(node, out)  # the conv's own clamp (before a fused residual add)
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("in_c", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("out_c", out.shape[3]),
              ("kernel_h", kh), ("kernel_w", kw), ("stride_h", sh), ("stride_w", sw),
              ("dilation_h", dh), ("dilation_w", dwl), ("pad_top", pt), ("pad_left", pl),
              ("depth_multiplier", mult)]
    head.append(f"  kernel {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dwl}, pad t{pt} l{pl} b{pb} r{pr}"
                + (f", depth multiplier {mult}" if dw else "") + f", act [{lo if s8 else flo}, {hi if s8 else fhi}]")
    q = None
    if s8:
        q = gen.q(node)
        mi, si = gen.mult_shift(node, out.shape[3], live=live, multipliers=not helium)  # (Helium: in the header)
        fields += [("input_offset", c_int(q["input_offset"])), ("filter_offset", c_int(q["filter_offset"])),
                   ("output_offset", c_int(q["output_offset"]))]
    fields += [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
    if s8:
        fields += [("multiplier", mi), ("shift", si)]
    skip = "NULL"
    if res:
        rq = res.get("q") if s8 else None
        if s8 and rq is None:
            raise ModelError("fused residual add without parameters", where=f"node {node.name!r}")
        rid = gen.ident(f"{node.name}_residual")
        gen.struct("ec_add_params_t", rid, gen.add_fields(rq, node, out, res.get("act")),
                   c_comment(f"{node.name}: fused residual add of {gen.tensor(res['tensor'])}"))
        fields.append(("residual", f"&{rid}"))
        skip = gen.tensor(res["tensor"])
        head.append(f"  + residual add of {gen.tensor(res['tensor'])} "
                    f"(fused{', from ' + res['add'] if res.get('add') else ''})")
    conv_fields = [(f, str(v)) for f, v in fields]
    fused = (lay is not None or helium) and (node.name in gen.fused or node.name in gen.fused_b)
    if not fused:  # a fused layer's calls take per-row variants (gemm.row_fusion)
        gen.struct("ec_conv_params_t", L.base, conv_fields, c_comment(f"{node.name}: {node.op}"))
    if lay is not None:
        return gemm.emit_gemm(gen, L, lay, live, q, conv_fields, filt, bias, skip, wflash, (lo, hi), fused)
    if helium and fused:
        return mve.row_fusion(gen, L, conv_fields, filt)
    if k.name.endswith("_mve3x3"):
        head.append("  Helium kernel (MVE), 3x3 fast path (nine taps in registers, int8 products summed in pairs)")
        return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {filt}, {gen.tensor(out.name)}, {row}, {mve.workspace(gen, L)});"
    if helium:
        head.append("  Helium kernel (MVE), filter packed with the input offset folded into the bias")
        return (f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {filt}, {gen.tensor(out.name)}, {row}, {skip}, "
                f"{mve.workspace(gen, L)});")
    ins = f"{gen.tensor(x.name)}, {filt}, {bias}, {gen.tensor(out.name)}, {row}"
    if groups > 1:
        if not k.name.startswith("ec_conv2d_grouped"):
            raise AssertionError("grouped convolutions take ec_conv2d_grouped_*")
        head.append(f"  {groups} groups of {x.shape[3] // groups} input and {out.shape[3] // groups} output channels")
        return f"{k.name}(&{L.base}, {groups}, {ins}, {skip});"
    if k.name == "ec_conv2d_s8_dsp":
        head.append("  DSP kernel (SMLAD), input offset folded into the bias")
    elif k.name == "ec_depthwise_conv2d_s8_dsp3x3":
        head.append("  DSP kernel, 3x3 fast path (4 rows x 2 channels, SMLAD)")
        return f"{k.name}(&{L.base}, {ins});"
    elif k.name == "ec_depthwise_conv2d_s8_dsp3x3w":
        ws = gen.plan.workspace[node.name]
        head.append("  DSP kernel, 3x3 fast path in strips (int16 row pairs, blocks of 4 rows, SMLAD)")
        head.append(f"  row pairs workspace: {ws[1]} bytes at {ws[0]}")
        return (f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {filt}, {bias}, {gen.tensor(out.name)}, "
                f"(int8_t *)(arena.bytes + {ws[0]}));")
    elif k.name == "ec_depthwise_conv2d_s8_dsp3x3s2":
        head.append("  DSP kernel, 3x3 stride-2 path (row and column pairs, SMLAD)")
        return f"{k.name}(&{L.base}, {ins});"
    elif k.name == "ec_depthwise_conv2d_s8_dsp":
        head.append("  DSP kernel (SMLABB/SMLATT, 4 channels at a time)")
    return f"{k.name}(&{L.base}, {ins}, {skip});"
