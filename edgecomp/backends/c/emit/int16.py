"""int16 ("16x8") layers: int16 activations (zero point 0), int8 weights, int64 sums.

Their kernels are in ``ec_kernels_s16.{h,c}`` (copied into a bundle only when the graph has
int16 layers).  Parameter blocks are the int8 kernels' structs (``ec_conv_params_t``,
``ec_fc_params_t``, ``ec_pool_params_t``) with zero offsets.

Requantization is per output channel ``(multiplier Q31, shift)`` from
``passes/requantize.py``; when every multiplier of a layer is exactly 2^30 (power-of-two
scales, e.g. after :func:`edgecomp.compress.fixedpoint.to_power_of_two`) the layer is
*shift-only*: its multiplier array is left out of flash and the kernel gets ``NULL``.
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....errors import ModelError, UnsupportedError
from ....sanitize import c_comment
from ....int16 import act_range as _act
from ....int16 import check_tensors as _check_s16
from ....int16 import shift_only
from ....ops.pool import tflite_window
from ..kernels.catalogue import kernel
from ..literals import c_float

GROUPS = ("s16",)


def _requant_arrays(gen, node: ir.Node, n: int, head: list[str]) -> tuple[str, str]:
    """(multiplier array or NULL, shift array) of a weighted int16 layer."""
    q = gen.q(node)
    if q.get("input_offset", 0) or q.get("output_offset", 0) or q.get("filter_offset", 0):
        raise UnsupportedError("int16 layer with a zero point", where=f"node {node.name!r}",
                               fix="Quantize int16 activations and int8 weights symmetrically")
    m = np.broadcast_to(np.asarray(q["multiplier"], dtype=np.int64), (n,))
    s = np.broadcast_to(np.asarray(q["shift"], dtype=np.int64), (n,))
    if s.min() < -128 or s.max() > 127:
        raise UnsupportedError(f"requantization shift out of range ({int(s.min())}..{int(s.max())})",
                               where=f"node {node.name!r}", fix="Check the model's quantization scales")
    si = gen.const_array(gen.ident_base, "shift", s, "int8_t", f"{node.name}: requantization shifts (> 0 is left)")
    if shift_only(q):
        head.append("  requantization: shift only (power-of-two scales)")
        return "NULL", si
    mi = gen.const_array(gen.ident_base, "multiplier", m, "int32_t", f"{node.name}: Q31 requantization multipliers")
    return mi, si


@kernel("ec_conv2d_s16", "conv2d", "int16", groups=GROUPS)
@kernel("ec_depthwise_conv2d_s16", "depthwise_conv2d", "int16", groups=GROUPS)
def emit_conv(gen, L, k) -> str:
    """A 16x8 convolution: int16 activations, int8 weights, int64 sums."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    a = node.attrs
    g = gen.g
    if a.get("residual"):
        raise UnsupportedError("residual add fused into an int16 convolution", where=f"node {node.name!r}")
    _check_s16(node, x, out)
    w = g.tensors[node.inputs[1]]
    dw = node.op == "depthwise_conv2d"
    mult = int(a.get("depth_multiplier", 1)) if dw else 1
    if len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4 or \
            (dw and w.shape[3] != x.shape[3] * mult) or (not dw and w.shape[3] != x.shape[3]) or \
            w.shape[3 if dw else 0] != out.shape[3]:
        raise ModelError(f"weights {list(w.shape)} do not match input {list(x.shape)} and output {list(out.shape)}",
                         where=f"node {node.name!r}")
    kh, kw = w.shape[1], w.shape[2]
    sh, sw = a.get("stride", (1, 1))
    dh, dwl = a.get("dilation", (1, 1))
    pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
    filt = gen.const(node, 1, "filter", "int8_t")
    bias = gen.const(node, 2, "bias", "int32_t") or "NULL"
    lo, hi = _act(node)
    head.append(f"  kernel {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dwl}, pad t{pt} l{pl} b{pb} r{pr}"
                + (f", depth multiplier {mult}" if dw else "") + f", act [{lo}, {hi}] (int16 x int8, int64 sums)")
    mi, si = _requant_arrays(gen, node, out.shape[3], head)
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("in_c", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("out_c", out.shape[3]),
              ("kernel_h", kh), ("kernel_w", kw), ("stride_h", sh), ("stride_w", sw),
              ("dilation_h", dh), ("dilation_w", dwl), ("pad_top", pt), ("pad_left", pl),
              ("depth_multiplier", mult), ("input_offset", 0), ("filter_offset", 0), ("output_offset", 0),
              ("act_min", lo), ("act_max", hi), ("act_min_f", "0.0f"), ("act_max_f", "0.0f"),
              ("multiplier", mi), ("shift", si), ("residual", "NULL")]
    gen.struct("ec_conv_params_t", gen.ident_base, [(f, str(v)) for f, v in fields],
               _comment(f"{node.name}: {node.op} int16"))
    return f"{k.name}(&{gen.ident_base}, {gen.tensor(x.name)}, {filt}, {bias}, {gen.tensor(out.name)}, {row});"


@kernel("ec_fully_connected_s16", "fully_connected", "int16", groups=GROUPS)
def emit_fc(gen, L, k) -> str:
    """A 16x8 fully connected layer."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    g = gen.g
    _check_s16(node, x, out)
    w = g.tensors[node.inputs[1]]
    if node.attrs.get("residual"):
        raise UnsupportedError("residual add fused into fully_connected", where=f"node {node.name!r}")
    if len(w.shape) != 2 or x.size % w.shape[1] or out.size != (x.size // w.shape[1]) * w.shape[0]:
        raise ModelError(f"weights {list(w.shape)} do not match input {list(x.shape)} and output {list(out.shape)}",
                         where=f"node {node.name!r}")
    filt = gen.const(node, 1, "filter", "int8_t")
    bias = gen.const(node, 2, "bias", "int32_t") or "NULL"
    lo, hi = _act(node)
    head.append(f"  act [{lo}, {hi}] (int16 x int8, int64 sums)")
    mi, si = _requant_arrays(gen, node, w.shape[0], head)
    fields = [("batches", x.size // w.shape[1]), ("in_features", w.shape[1]), ("out_features", w.shape[0]),
              ("input_offset", 0), ("filter_offset", 0), ("output_offset", 0), ("act_min", lo), ("act_max", hi),
              ("act_min_f", "0.0f"), ("act_max_f", "0.0f"), ("multiplier", mi), ("shift", si)]
    gen.struct("ec_fc_params_t", gen.ident_base, [(f, str(v)) for f, v in fields],
               _comment(f"{node.name}: fully_connected int16"))
    return (f"ec_fully_connected_s16(&{gen.ident_base}, {gen.tensor(x.name)}, {filt}, {bias}, "
            f"{gen.tensor(out.name)}, {row});")


@kernel("ec_max_pool2d_s16", "max_pool2d", "int16", groups=GROUPS)
@kernel("ec_avg_pool2d_s16", "avg_pool2d", "int16", groups=GROUPS)
def emit_pool(gen, L, k) -> str:
    """An int16 pool (the average with 16 fraction bits, rescaled once)."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    a = node.attrs
    _check_s16(node, x, out)
    if not tflite_window(node.attrs):
        raise UnsupportedError(f"int16 {node.op} with dilation or count_include_pad", where=f"node {node.name!r}",
                               fix="Keep the pool in int8 or float")
    avg = node.op == "avg_pool2d"
    if not avg and not _same(x, out):
        raise UnsupportedError("int16 max pool whose output quantization differs from its input's",
                               where=f"node {node.name!r}", fix="Requantize after the pool")
    if len(x.shape) != 4 or len(out.shape) != 4 or x.shape[3] != out.shape[3]:
        raise ModelError("pooling tensors must be 4-D NHWC with equal channels", where=f"node {node.name!r}")
    kh, kw = a["kernel"]
    sh, sw = a.get("stride", (1, 1))
    pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
    lo, hi = _act(node)
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("channels", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("kernel_h", kh), ("kernel_w", kw),
              ("stride_h", sh), ("stride_w", sw), ("pad_top", pt), ("pad_left", pl),
              ("act_min", lo), ("act_max", hi), ("act_min_f", "0.0f"), ("act_max_f", "0.0f")]
    head.append(f"  window {kh}x{kw}, stride {sh}x{sw}, pad t{pt} l{pl} b{pb} r{pr}")
    gen.struct("ec_pool_params_t", gen.ident_base, [(f, str(v)) for f, v in fields],
               _comment(f"{node.name}: {node.op} int16"))
    if avg:
        q = gen.q(node)  # passes.requantize.avg_pool_s16_q
        m, sh = q["multiplier"], q["shift"]
        head.append("  mean rescaled by s_in/s_out: " + ("a shift" if m == 0 else "Q31 multiplier") + f", shift {sh}")
        return (f"ec_avg_pool2d_s16(&{gen.ident_base}, {m}, {sh}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, "
                f"{row});")
    return f"ec_max_pool2d_s16(&{gen.ident_base}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, {row});"


@kernel("ec_add_s16", "add", "int16", groups=GROUPS)
def emit_add(gen, L, k) -> str:
    """int16 add: both operands scaled to a common unit, summed, requantized once."""
    node, x, out, head = L.node, L.x, L.out, L.head
    b = gen.g.tensors[node.inputs[1]]
    _check_s16(node, x, b, out)
    if b.shape != x.shape or x.size != out.size:
        raise UnsupportedError("add with broadcasting", where=f"node {node.name!r}",
                               fix="Give both inputs the same shape")
    q = gen.q(node)  # passes.requantize.add_s16_q
    lo, hi = _act(node)
    head.append(f"  int16 add: (a * {q['a_multiplier']} + b * {q['b_multiplier']}) requantized "
                + ("by a shift" if q["output_multiplier"] == 0 else "(Q31)") + f", act [{lo}, {hi}]")
    fields = [(f, str(v)) for f, v in q.items()] + [("act_min", str(lo)), ("act_max", str(hi))]
    gen.struct("ec_add_s16_params_t", gen.ident_base, fields, _comment(f"{node.name}: add int16"))
    return (f"ec_add_s16(&{gen.ident_base}, {gen.tensor(x.name)}, {gen.tensor(b.name)}, {gen.tensor(out.name)}, "
            f"{out.size});")


def _same(a: ir.Tensor, b: ir.Tensor) -> bool:
    return a.quant is not None and b.quant is not None and np.array_equal(a.quant.scale, b.quant.scale)


def _comment(text: str) -> str:
    return c_comment(text)


def _f32(v) -> str:
    return c_float(float(np.float32(v)))


@kernel("ec_clamp_s16", "clamp", "int16", groups=GROUPS)
def emit_clamp(gen, L, k) -> str:
    """int16 values clamped (a clamp not fused into its producer)."""
    _check_s16(L.node, L.x, L.out)
    lo, hi = _act(L.node)
    return f"ec_clamp_s16({gen.tensor(L.x.name)}, {gen.tensor(L.out.name)}, {L.out.size}, {lo}, {hi});"


@kernel("ec_quantize_f32_s16", "quantize", "int16", groups=GROUPS, rank=10,
        applies=lambda gen, n: gen.g.tensors[n.inputs[0]].dtype == "float32")
@kernel("ec_requantize_s16", "quantize", "int16", groups=GROUPS)
def emit_quantize(gen, L, k) -> str:
    """float -> int16 (ties to even, as ONNX QuantizeLinear) or int16 -> int16."""
    node, x, out = L.node, L.x, L.out
    if k.name == "ec_quantize_f32_s16":
        _check_s16(node, out)
        return (f"ec_quantize_f32_s16({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, "
                f"{_f32(out.quant.scale[0])});")
    _check_s16(node, x, out)
    q = gen.q(node)  # passes.requantize.requantize_s16_q (multiplier 0: shift only)
    return (f"ec_requantize_s16({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, {int(q['multiplier'])}, "
            f"{int(q['shift'])});")


@kernel("ec_dequantize_s16_f32", "dequantize", "int16", groups=GROUPS,
        applies=lambda gen, n: gen.g.tensors[n.outputs[0]].dtype == "float32")
def emit_dequantize(gen, L, k) -> str:
    """int16 -> float (float32 arithmetic, as ONNX DequantizeLinear)."""
    _check_s16(L.node, L.x)
    return (f"ec_dequantize_s16_f32({gen.tensor(L.x.name)}, {gen.tensor(L.out.name)}, {L.out.size}, "
            f"{_f32(L.x.quant.scale[0])});")
