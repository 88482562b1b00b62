"""fully_connected layers: the reference kernels and the DSP kernels (output rows in quads)."""
from __future__ import annotations

from ....errors import ModelError, UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..kernels.packing import folded_bias, pack_fc_weights
from ..kernels.predicates import gemm_acc_ok, gemm_fast_requant
from ..literals import c_int, fmt_q, shape_text
from . import mve


def _dsp(gen, node) -> bool:
    """The DSP kernels fold input_offset * sum(w) into the bias: a symmetric filter and a constant
    int32 bias (or none)."""
    q = node.attrs.get("q")
    w = gen.g.tensors[node.inputs[1]]
    if not gen.dsp or q is None or int(q["filter_offset"]) != 0 or not w.is_const or len(w.shape) != 2 \
            or w.dtype != "int8" or node.attrs.get("residual"):
        return False
    if len(node.inputs) > 2:
        b = gen.g.tensors[node.inputs[2]]
        return b.is_const and b.dtype == "int32"
    return True


@kernel("ec_fully_connected_s8_mve", "fully_connected", "int8", applies=mve.marked, groups=mve.GROUPS, rank=mve.RANK)
@kernel("ec_fully_connected_s8_dsp16", "fully_connected", "int8", rank=10, groups=("dsp",),
        applies=lambda gen, n: gen.speed and _dsp(gen, n), packer=lambda w: pack_fc_weights(w, True))
@kernel("ec_fully_connected_s8_dsp", "fully_connected", "int8", rank=20, groups=("dsp",), applies=_dsp,
        packer=pack_fc_weights)
@kernel("ec_fully_connected_s8", "fully_connected", "int8")
@kernel("ec_fully_connected_f32", "fully_connected", "float32")
def emit_fc(gen, L, k) -> str:
    """A fully connected layer: ec_fc_params_t, its constants, the chosen kernel's call."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    w = gen.g.tensors[node.inputs[1]]
    s8 = out.dtype == "int8"
    if len(w.shape) != 2 or x.size % w.shape[1] or out.size != (x.size // w.shape[1]) * w.shape[0]:
        raise ModelError(f"weights {shape_text(w.shape)} do not match input {shape_text(x.shape)} and output "
                         f"{shape_text(out.shape)}", where=f"node {node.name!r}")
    if node.attrs.get("residual"):
        raise UnsupportedError("residual add fused into fully_connected", where=f"node {node.name!r}")
    gen.const_tensor(node, 1, "filter", "int8_t" if s8 else "float")  # (clear errors first)
    helium = k.name == "ec_fully_connected_s8_mve"
    dsp = k.name != "ec_fully_connected_s8" and s8 and not helium
    bias = None
    if helium:
        filt = mve.packed_filter(gen, node)
    elif dsp:
        wide = k.name.endswith("16")
        name = node.inputs[2] if len(node.inputs) > 2 else "(none)"
        nq = -(-w.shape[0] // 4) * 4
        folded = list(folded_bias(gen.g, node, gen.q(node)["input_offset"], w.shape[0]))
        bias = gen.const_array(gen.ident_base, "bias", folded + [0] * (nq - len(folded)), "int32_t",
                               f"{node.name}: bias {name} + input_offset * sum(filter), for the DSP kernel")
        filt = gen.const_array(gen.ident_base, "filter_quads", pack_fc_weights(w.data, wide),
                               "int16_t" if wide else "int8_t",
                               f"{node.name}: filter {w.name} {shape_text(w.shape)} {fmt_q(w)}, in quads of "
                               "output rows and groups of 4 inputs" + (", widened to int16 (--optimize speed)"
                                                                       if wide else ""), align=4)
        if wide:
            filt = f"(const int8_t *){filt}"
    else:
        filt = gen.const(node, 1, "filter", "int8_t" if s8 else "float")
    if not helium:  # (the Helium kernel's bias is in its packed filter)
        bias = bias or gen.const(node, 2, "bias", "int32_t" if s8 else "float") or "NULL"
    lo, hi, flo, fhi = gen.act(node, out)
    fields = [("batches", x.size // w.shape[1]), ("in_features", w.shape[1]), ("out_features", w.shape[0])]
    if s8:
        q = gen.q(node)
        mi, si = gen.mult_shift(node, w.shape[0], multipliers=not helium)  # (Helium: in the header)
        fields += [("input_offset", c_int(q["input_offset"])), ("filter_offset", c_int(q["filter_offset"])),
                   ("output_offset", c_int(q["output_offset"]))]
    fields += [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
    if s8:
        fields += [("multiplier", mi), ("shift", si)]
    if dsp and gemm_fast_requant(gen.q(node), None, w.shape[0]) and gemm_acc_ok(gen.g, node):
        fields.append(("fast", 1))
        head.append("  one-multiply requantization (gemm_fast_requant, gemm_acc_ok)")
    head.append(f"  act [{lo if s8 else flo}, {hi if s8 else fhi}]")
    gen.struct("ec_fc_params_t", L.base, [(f, str(v)) for f, v in fields], c_comment(f"{node.name}: fully_connected"))
    if helium:
        head.append("  Helium kernel (MVE, 6 output rows at a time), filter packed with the input offset folded "
                    "into the bias")
        return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {filt}, {gen.tensor(out.name)}, {row});"
    if dsp:
        head.append("  DSP kernel (4 output rows at a time, SMLAD), input offset folded into the bias"
                    + (", int16 weights in flash" if k.name.endswith("16") else ""))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {filt}, {bias}, {gen.tensor(out.name)}, {row});"
