"""int16 ("16x8") layers for the C generator: int16 activations (zero point 0), int8 weights.

:mod:`edgecomp.backends.c_codegen` hands every layer that reads or writes an int16
activation to :func:`layer_call`, which writes the parameter block and returns the call
of a kernel from ``ec_kernels_s16.{h,c}`` (copied into the bundle only when the graph
has int16 layers, see :func:`uses_s16`).  Parameter blocks are the int8 kernels'
structs (``ec_conv_params_t``, ``ec_fc_params_t``, ``ec_pool_params_t``) with zero offsets.

Requantization is per output channel ``(multiplier Q31, shift)`` from
``passes/requantize.py``; when every multiplier of a layer is exactly 2^30 (power-of-two
scales, e.g. after :func:`edgecomp.compress.fixedpoint.to_power_of_two`) the layer is
*shift-only*: its multiplier array is left out of flash and the kernel gets ``NULL``.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import ModelError, UnsupportedError
from . import kernel_files

S16_FILES = kernel_files.names("s16")
POW2_MULTIPLIER = 1 << 30
INT16_MIN, INT16_MAX = -32768, 32767


def is_s16(graph: ir.Graph, node: ir.Node) -> bool:
    names = [i for i in node.inputs if not graph.tensors[i].is_const] + list(node.outputs)
    return any(graph.tensors[n].dtype == "int16" for n in names)


def uses_s16(graph: ir.Graph) -> bool:
    return any(is_s16(graph, n) for n in graph.nodes)


def shift_only(q: dict) -> bool:
    """Every multiplier is 2^30: requantization is a shift."""
    return bool(np.all(np.asarray(q["multiplier"], dtype=np.int64) == POW2_MULTIPLIER))


def _act(node: ir.Node) -> tuple[int, int]:
    act = node.attrs.get("act")
    lo, hi = act if act is not None else (INT16_MIN, INT16_MAX)
    lo = INT16_MIN if lo is None else max(int(lo), INT16_MIN)
    hi = INT16_MAX if hi is None else min(int(hi), INT16_MAX)
    return lo, hi


def _check_s16(node: ir.Node, *tensors: ir.Tensor) -> None:
    for t in tensors:
        if t.dtype != "int16":
            raise UnsupportedError(f"{node.op} with a {t.dtype} tensor {t.name!r} among int16 ones",
                                   where=f"node {node.name!r}", fix="Quantize the model with int16 activations "
                                   "throughout (--precision int16)")
        if t.quant is None or np.any(t.quant.zero_point != 0):
            raise UnsupportedError(f"int16 tensor {t.name!r} without symmetric quantization (zero point 0)",
                                   where=f"node {node.name!r}", fix="Quantize int16 activations symmetrically")


def _requant_arrays(gen, node: ir.Node, n: int, head: list[str]) -> tuple[str, str]:
    """(multiplier array or NULL, shift array) of a weighted int16 layer."""
    q = gen._q(node)
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


def _conv(gen, node, x, out, head, row) -> str:
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
    filt = gen._const(node, 1, "filter", "int8_t")
    bias = gen._const(node, 2, "bias", "int32_t") or "NULL"
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
    gen._struct("ec_conv_params_t", gen.ident_base, [(k, str(v)) for k, v in fields],
                _comment(f"{node.name}: {node.op} int16"))
    k = "ec_depthwise_conv2d_s16" if dw else "ec_conv2d_s16"
    return f"{k}(&{gen.ident_base}, {gen.tensor(x.name)}, {filt}, {bias}, {gen.tensor(out.name)}, {row});"


def _fc(gen, node, x, out, head, row) -> str:
    g = gen.g
    _check_s16(node, x, out)
    w = g.tensors[node.inputs[1]]
    if node.attrs.get("residual"):
        raise UnsupportedError("residual add fused into fully_connected", where=f"node {node.name!r}")
    if len(w.shape) != 2 or x.size % w.shape[1] or out.size != (x.size // w.shape[1]) * w.shape[0]:
        raise ModelError(f"weights {list(w.shape)} do not match input {list(x.shape)} and output {list(out.shape)}",
                         where=f"node {node.name!r}")
    filt = gen._const(node, 1, "filter", "int8_t")
    bias = gen._const(node, 2, "bias", "int32_t") or "NULL"
    lo, hi = _act(node)
    head.append(f"  act [{lo}, {hi}] (int16 x int8, int64 sums)")
    mi, si = _requant_arrays(gen, node, w.shape[0], head)
    fields = [("batches", x.size // w.shape[1]), ("in_features", w.shape[1]), ("out_features", w.shape[0]),
              ("input_offset", 0), ("filter_offset", 0), ("output_offset", 0), ("act_min", lo), ("act_max", hi),
              ("act_min_f", "0.0f"), ("act_max_f", "0.0f"), ("multiplier", mi), ("shift", si)]
    gen._struct("ec_fc_params_t", gen.ident_base, [(k, str(v)) for k, v in fields],
                _comment(f"{node.name}: fully_connected int16"))
    return (f"ec_fully_connected_s16(&{gen.ident_base}, {gen.tensor(x.name)}, {filt}, {bias}, "
            f"{gen.tensor(out.name)}, {row});")


def _pool(gen, node, x, out, head, row) -> str:
    a = node.attrs
    _check_s16(node, x, out)
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
    gen._struct("ec_pool_params_t", gen.ident_base, [(k, str(v)) for k, v in fields],
                _comment(f"{node.name}: {node.op} int16"))
    if avg:
        m, sh = _mult_shift(_scale(x) / _scale(out))
        head.append("  mean rescaled by s_in/s_out: " + ("a shift" if m == 0 else "Q31 multiplier") + f", shift {sh}")
        return (f"ec_avg_pool2d_s16(&{gen.ident_base}, {m}, {sh}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, "
                f"{row});")
    return f"ec_max_pool2d_s16(&{gen.ident_base}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, {row});"


def _scale(t: ir.Tensor) -> float:
    return float(np.float32(t.quant.scale[0]))


def _mult_shift(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) of a positive real; multiplier 0 when it is 2^30 (shift only)."""
    from ..numerics import quantize_multiplier
    m, sh = quantize_multiplier(real)
    return (0 if int(m) == POW2_MULTIPLIER else int(m)), int(sh)


def add_params(sa: float, sb: float, so: float) -> dict:
    """ec_add_s16_params_t: y = (a * Ma + b * Mb) * 2^-P * 2s / s_out, rounded once.

    With s = max(s_a, s_b): Ma = round(s_a / 2s * 2^P), Mb = round(s_b / 2s * 2^P) and
    (output_multiplier, sho) = 2s / s_out as Q31; P = min(31, 31 + sho) keeps the final right
    shift n = 31 - sho + P within 62 (when 2s / s_out is small the result is small too)."""
    smax = max(sa, sb)
    mo, sho = _mult_shift(2.0 * smax / so)
    p = max(1, min(31, 31 + sho))
    ma = int(round(sa / (2.0 * smax) * 2.0 ** p))
    mb = int(round(sb / (2.0 * smax) * 2.0 ** p))
    return {"a_multiplier": ma, "b_multiplier": mb, "output_multiplier": mo, "output_shift": sho - p}


def _add(gen, node, x, out, head) -> str:
    b = gen.g.tensors[node.inputs[1]]
    _check_s16(node, x, b, out)
    if b.shape != x.shape or x.size != out.size:
        raise UnsupportedError("add with broadcasting", where=f"node {node.name!r}",
                               fix="Give both inputs the same shape")
    q = add_params(_scale(x), _scale(b), _scale(out))
    lo, hi = _act(node)
    head.append(f"  int16 add: (a * {q['a_multiplier']} + b * {q['b_multiplier']}) requantized "
                + ("by a shift" if q["output_multiplier"] == 0 else "(Q31)") + f", act [{lo}, {hi}]")
    fields = [(k, str(v)) for k, v in q.items()] + [("act_min", str(lo)), ("act_max", str(hi))]
    gen._struct("ec_add_s16_params_t", gen.ident_base, fields, _comment(f"{node.name}: add int16"))
    return (f"ec_add_s16(&{gen.ident_base}, {gen.tensor(x.name)}, {gen.tensor(b.name)}, {gen.tensor(out.name)}, "
            f"{out.size});")


def _same(a: ir.Tensor, b: ir.Tensor) -> bool:
    return a.quant is not None and b.quant is not None and np.array_equal(a.quant.scale, b.quant.scale)


def _comment(text: str) -> str:
    from ..sanitize import c_comment
    return c_comment(text)


def _f32(v) -> str:
    from .c_codegen import c_float
    return c_float(float(np.float32(v)))


def layer_call(gen, node: ir.Node, x: ir.Tensor | None, out: ir.Tensor, head: list[str], row: str) -> str | None:
    """The C call of an int16 layer (parameters written through ``gen``), or None if not int16."""
    g = gen.g
    if not is_s16(g, node) or node.op in ("reshape", "concat"):
        return None  # reshape is an alias of its input and concat moves bytes, whatever the type
    op = node.op
    if op in ("conv2d", "depthwise_conv2d"):
        return _conv(gen, node, x, out, head, row)
    if op == "fully_connected":
        return _fc(gen, node, x, out, head, row)
    if op in ("max_pool2d", "avg_pool2d"):
        return _pool(gen, node, x, out, head, row)
    if op == "add":
        return _add(gen, node, x, out, head)
    if op == "clamp":
        _check_s16(node, x, out)
        lo, hi = _act(node)
        return f"ec_clamp_s16({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, {lo}, {hi});"
    if op == "quantize" and x.dtype == "float32":
        _check_s16(node, out)
        return (f"ec_quantize_f32_s16({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, "
                f"{_f32(out.quant.scale[0])});")
    if op == "quantize":
        _check_s16(node, x, out)
        q = gen._q(node)
        m = 0 if shift_only({"multiplier": q["multiplier"]}) else int(q["multiplier"])
        return (f"ec_requantize_s16({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, {m}, "
                f"{int(q['shift'])});")
    if op == "dequantize" and out.dtype == "float32":
        _check_s16(node, x)
        return (f"ec_dequantize_s16_f32({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, "
                f"{_f32(x.quant.scale[0])});")
    raise UnsupportedError(f"int16 {op} in the C backend", where=f"node {node.name!r}",
                           fix="Only conv2d, depthwise_conv2d, fully_connected, max/avg pools, add, concat, reshape, "
                               "clamp, quantize and dequantize run in int16; the frontend keeps other ops in float")
