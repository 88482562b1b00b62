"""Requantization pass: float scales -> Q31 multipliers and shifts, as TFLite Micro computes them.

``requantize(graph)`` fills ``node.attrs["q"]`` of every int8 and int16 node (see
docs/internals.md for the field names, which the C backend reads).  Effective
scales are formed with the same float/double casts as TFLM's Prepare functions,
so the integers are identical to the ones TFLM computes at init time.

Fields beyond docs/internals.md:
* conv2d / depthwise_conv2d / fully_connected with a fused residual add
  (``attrs["residual"]``, see interp.py): ``q`` targets ``attrs["conv_out_quant"]`` (the
  conv's own result), and ``attrs["residual"]["q"]`` holds the add's fields (as for ``add``:
  input1 = the conv result, input2 = the skip tensor).
* Fully-connected multipliers use double(s_in) * double(s_w) / double(s_out), like conv:
  verified bit-exact against the PyPI tflite-micro build (a float32 product differs).

int16 ("16x8") nodes get the parameters of the ``ec_kernels_s16.c`` kernel they run, the
one set both the C emitter and ``edgecomp.interp_s16`` read: conv2d / depthwise_conv2d /
fully_connected as for int8 (per-channel Q31 multipliers, offsets 0; a layer whose multipliers
are all 2^30 is *shift only*), ``add`` :func:`add_s16_q`, ``avg_pool2d`` :func:`avg_pool_s16_q`,
int16 -> int16 ``quantize`` :func:`requantize_s16_q`.  In those three sets a multiplier 0 means
shift only (the effective scale is a power of two).
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..axes import count, reduced_axes
from ..int16 import POW2_MULTIPLIER
from ..errors import ModelError, UnsupportedError
from .requantize_elementwise import ELEMENTWISE_Q, elementwise_q
from ..numerics import (SOFTMAX_SCALED_DIFF_INTEGER_BITS, calculate_input_radius, preprocess_softmax_scaling,
                        quantize_multiplier, quantize_multiplier_smaller_than_one_exp)

ADD_LEFT_SHIFT = 20  # TFLM add/sub int8


def _quant(graph: ir.Graph, node: ir.Node, name: str) -> ir.QuantParams:
    t = graph.tensors[name]
    if t.quant is None:
        raise ModelError(f"{t.dtype} tensor {name!r} has no quantization parameters", where=f"node {node.name!r}",
                         fix="Quantize the model fully (int8 scale and zero point on every tensor)")
    return t.quant


def _f32(x) -> float:
    return float(np.float32(x))


def conv_out_quant(node: ir.Node) -> ir.QuantParams | None:
    """The quantization of a conv's own result when a residual add is fused after it."""
    q = node.attrs.get("conv_out_quant")
    if q is None or isinstance(q, ir.QuantParams):
        return q
    return ir.QuantParams(q["scale"], q["zero_point"])


def _conv_q(graph: ir.Graph, node: ir.Node) -> dict:
    """conv2d / depthwise_conv2d / fully_connected / transpose_conv2d: per-channel multipliers and shifts."""
    qi = _quant(graph, node, node.inputs[0])
    qw = _quant(graph, node, node.inputs[1])
    qo = conv_out_quant(node) or _quant(graph, node, node.outputs[0])
    w = graph.tensors[node.inputs[1]]
    n_out = w.shape[0] if node.op in ("conv2d", "fully_connected", "transpose_conv2d") else w.shape[-1]
    scales = qw.scale if qw.scale.size > 1 else np.full(n_out, qw.scale[0], dtype=np.float32)
    if scales.size != n_out:
        raise ModelError(f"weight {w.name!r} has {scales.size} scales for {n_out} output channels",
                         where=f"node {node.name!r}", fix="Re-export the model")
    if np.any(qw.zero_point != qw.zero_point.flat[0]):
        raise UnsupportedError("per-channel weight zero points that differ", where=f"node {node.name!r}",
                               fix="Quantize weights symmetrically (TFLite int8 spec)")
    mult = np.zeros(n_out, dtype=np.int32)
    shift = np.zeros(n_out, dtype=np.int32)
    in_s, out_s = _f32(qi.scale[0]), _f32(qo.scale[0])
    for c in range(n_out):
        # double(input_scale) * double(filter_scale) / double(output_scale), as TFLM's conv and
        # (verified against the PyPI build) fully-connected Prepare do it
        eff = in_s * _f32(scales[c]) / out_s
        mult[c], shift[c] = quantize_multiplier(eff)
    return {"input_offset": -int(qi.zero_point[0]), "filter_offset": -int(qw.zero_point.flat[0]),
            "output_offset": int(qo.zero_point[0]), "multiplier": mult, "shift": shift}


def add_q(qa: ir.QuantParams, qb: ir.QuantParams, qo: ir.QuantParams) -> dict:
    """TFLM add int8 parameters (also used for residual adds fused into a conv)."""
    s1, s2, so = _f32(qa.scale[0]), _f32(qb.scale[0]), _f32(qo.scale[0])
    twice_max = 2.0 * float(np.float32(max(np.float32(s1), np.float32(s2))))
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(s2 / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one_exp(twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    return {"left_shift": ADD_LEFT_SHIFT, "input1_offset": -int(qa.zero_point[0]),
            "input2_offset": -int(qb.zero_point[0]), "output_offset": int(qo.zero_point[0]),
            "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2, "input2_shift": sh2,
            "output_multiplier": mo, "output_shift": sho}


def _s16_mult_shift(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) of a positive real as an int16 kernel takes it: multiplier 0 means
    shift only (the real is 2^(shift - 1)); a real too small for a Q31 multiplier (below 2^-32,
    ``quantize_multiplier`` flushes it to 0) becomes a shift that gives 0 (shift-only k > 62)."""
    m, sh = quantize_multiplier(real)
    if int(m) == 0:
        return 0, -62
    return (0 if int(m) == POW2_MULTIPLIER else int(m)), int(sh)


def add_s16_q(qa: ir.QuantParams, qb: ir.QuantParams, qo: ir.QuantParams) -> dict:
    """``ec_add_s16_params_t`` (int16 add): y = (a * Ma + b * Mb) * 2^-P * 2s / s_out, rounded once.

    With s = max(s_a, s_b): Ma = round(s_a / 2s * 2^P), Mb = round(s_b / 2s * 2^P) and
    (output_multiplier, sho) = 2s / s_out as Q31 (0: shift only); P = min(31, 31 + sho) keeps the
    final right shift n = 31 - sho + P within 62 (when 2s / s_out is small the result is small too)."""
    sa, sb, so = _f32(qa.scale[0]), _f32(qb.scale[0]), _f32(qo.scale[0])
    smax = max(sa, sb)
    mo, sho = _s16_mult_shift(2.0 * smax / so)
    p = max(1, min(31, 31 + sho))
    ma = int(round(sa / (2.0 * smax) * 2.0 ** p))
    mb = int(round(sb / (2.0 * smax) * 2.0 ** p))
    return {"a_multiplier": ma, "b_multiplier": mb, "output_multiplier": mo, "output_shift": sho - p}


def avg_pool_s16_q(qi: ir.QuantParams, qo: ir.QuantParams) -> dict:
    """``ec_avg_pool2d_s16``'s (multiplier, shift): the window mean (16 fraction bits) is rescaled
    by s_in / s_out with (multiplier, shift - 16); multiplier 0: shift only."""
    m, sh = _s16_mult_shift(_f32(qi.scale[0]) / _f32(qo.scale[0]))
    return {"multiplier": m, "shift": sh}


def requantize_s16_q(qi: ir.QuantParams, qo: ir.QuantParams) -> dict:
    """``ec_requantize_s16``'s (multiplier, shift): int16 -> int16 by s_in / s_out; multiplier 0:
    shift only."""
    m, sh = _s16_mult_shift(_f32(qi.scale[0]) / _f32(qo.scale[0]))
    return {"multiplier": m, "shift": sh}


def _softmax_q(graph: ir.Graph, node: ir.Node) -> dict:
    qi = _quant(graph, node, node.inputs[0])
    qo = _quant(graph, node, node.outputs[0])
    if abs(float(qo.scale[0]) - 1.0 / 256) > 0.001 * (1.0 / 256) or int(qo.zero_point[0]) != -128:
        raise UnsupportedError(
            f"int8 softmax output must have scale 1/256 and zero point -128, not "
            f"{float(qo.scale[0])} / {int(qo.zero_point[0])}", where=f"node {node.name!r}",
            fix="Quantize with the TFLite converter's softmax output parameters")
    beta = float(node.attrs.get("beta", 1.0))
    mult, left_shift = preprocess_softmax_scaling(beta, _f32(qi.scale[0]), SOFTMAX_SCALED_DIFF_INTEGER_BITS)
    diff_min = -calculate_input_radius(SOFTMAX_SCALED_DIFF_INTEGER_BITS, left_shift)
    return {"input_multiplier": mult, "input_left_shift": left_shift, "diff_min": int(diff_min)}


def mean_q(qi: ir.QuantParams, qo: ir.QuantParams, count: int) -> dict:
    """TFLM's int8 MEAN: QuantizeMultiplier(double(s_in) / double(s_out)) = (M, s), then the
    1/count folded in as QuantizedMeanOrSum does: k = min(floor(log2 count), 32, 31 + s),
    multiplier (M << k) / count (truncated), shift s - k."""
    m, s = quantize_multiplier(_f32(qi.scale[0]) / _f32(qo.scale[0]))
    k = min(int(count).bit_length() - 1, 32, 31 + s)
    return {"input_offset": -int(qi.zero_point[0]), "output_offset": int(qo.zero_point[0]),
            "multiplier": int((int(m) << k) // int(count)), "shift": int(s - k), "count": int(count)}


def _mean_q(graph: ir.Graph, node: ir.Node) -> dict:
    x = graph.tensors[node.inputs[0]]
    n = count(x.shape, reduced_axes(node, len(x.shape)))
    return mean_q(_quant(graph, node, node.inputs[0]), _quant(graph, node, node.outputs[0]), n)


def _l2_norm_q(graph: ir.Graph, node: ir.Node) -> dict:
    """TFLM's int8 L2_NORMALIZATION: its output is scale 1/128, zero point 0 whatever the tensor says."""
    qo = _quant(graph, node, node.outputs[0])
    if abs(float(qo.scale[0]) * 128 - 1) > 1e-6 or int(qo.zero_point[0]) != 0:
        raise UnsupportedError(f"int8 L2 normalization output with scale {float(qo.scale[0])} and zero point "
                               f"{int(qo.zero_point[0])}", where=f"node {node.name!r}",
                               fix="Quantize its output with scale 1/128 and zero point 0 (the TFLite converter does)")
    return {"input_offset": -int(_quant(graph, node, node.inputs[0]).zero_point[0])}


def _requant_q(graph: ir.Graph, node: ir.Node) -> dict:
    qi = _quant(graph, node, node.inputs[0])
    qo = _quant(graph, node, node.outputs[0])
    mult, shift = quantize_multiplier(_f32(qi.scale[0]) / _f32(qo.scale[0]))
    return {"multiplier": mult, "shift": shift, "input_offset": -int(qi.zero_point[0]),
            "output_offset": int(qo.zero_point[0])}


def bmm_q(graph: ir.Graph, node: ir.Node) -> dict:
    """int8 batch_matmul: TFLM's BATCH_MATMUL (GetQuantizedConvolutionMultipler: the float product
    of the operand scales, in double over the output scale)."""
    qa, qb = _quant(graph, node, node.inputs[0]), _quant(graph, node, node.inputs[1])
    qo = _quant(graph, node, node.outputs[0])
    mult, shift = quantize_multiplier(float(np.float32(qa.scale[0]) * np.float32(qb.scale[0])) / _f32(qo.scale[0]))
    return {"multiplier": mult, "shift": shift, "lhs_offset": -int(qa.zero_point[0]),
            "rhs_offset": -int(qb.zero_point[0]), "output_offset": int(qo.zero_point[0])}


def node_q(graph: ir.Graph, node: ir.Node) -> dict | None:
    """The ``q`` attributes of one node, or None if the node needs none."""
    out = graph.tensors[node.outputs[0]]
    src = graph.tensors[node.inputs[0]] if node.inputs else out
    if out.dtype == "float32" or src.dtype == "float32":
        return None  # float ops, quantize float->int and dequantize need no integers
    if "int16" in (out.dtype, src.dtype):
        return _s16_q(graph, node)
    if node.op in ("conv2d", "depthwise_conv2d", "fully_connected", "transpose_conv2d"):
        return _conv_q(graph, node)
    if node.op in ("add", "sub"):
        # SUB's parameters are ADD's: the tflite-micro build on PyPI (the reference) forms its scale
        # ratios in double as ADD does (TFLM's source once had them as float32; checked on random scales)
        return add_q(_quant(graph, node, node.inputs[0]), _quant(graph, node, node.inputs[1]),
                     _quant(graph, node, node.outputs[0]))
    if node.op == "softmax":
        return _softmax_q(graph, node)
    if node.op == "quantize":
        return _requant_q(graph, node)
    if node.op in ELEMENTWISE_Q:
        return elementwise_q(graph, node, _quant)
    if node.op == "mean":
        return _mean_q(graph, node)
    if node.op == "l2_normalization":
        return _l2_norm_q(graph, node)
    if node.op == "batch_matmul":
        return bmm_q(graph, node)
    if node.op in ("lstm", "gru"):
        from .recurrent_q import gru_q, lstm_q
        return lstm_q(graph, node) if node.op == "lstm" else gru_q(graph, node)
    return None


def residual_q(graph: ir.Graph, node: ir.Node) -> dict | None:
    """The ``q`` of a residual add fused into an int8 conv (``attrs["residual"]``): TFLM's add with
    input1 = the conv's own result (``conv_out_quant``), input2 = the skip tensor; None if none."""
    res = node.attrs.get("residual")
    if not res or graph.tensors[node.outputs[0]].dtype != "int8":
        return None
    own = conv_out_quant(node)
    if own is None:
        raise ModelError("fused residual add without the convolution's own output quantization",
                         where=f"node {node.name!r}", fix="Fuse the add with edgecomp.passes.fuse_residual")
    return add_q(own, _quant(graph, node, res["tensor"]), _quant(graph, node, node.outputs[0]))


def _s16_q(graph: ir.Graph, node: ir.Node) -> dict | None:
    """The parameters of an int16 node's kernel (see the module docstring)."""
    if node.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        return _conv_q(graph, node)
    if node.op == "add":
        return add_s16_q(_quant(graph, node, node.inputs[0]), _quant(graph, node, node.inputs[1]),
                         _quant(graph, node, node.outputs[0]))
    if node.op == "avg_pool2d":
        return avg_pool_s16_q(_quant(graph, node, node.inputs[0]), _quant(graph, node, node.outputs[0]))
    if node.op == "quantize":
        return requantize_s16_q(_quant(graph, node, node.inputs[0]), _quant(graph, node, node.outputs[0]))
    return None


def requantize(graph: ir.Graph, ctx=None) -> ir.Graph:
    """The requantization pass: set ``node.attrs["q"]`` on every integer node that needs integer
    multipliers, and ``attrs["residual"]["q"]`` on every fused residual add; return the graph."""
    for node in graph.nodes:
        q = node_q(graph, node)
        if q is not None:
            node.attrs["q"] = q
        rq = residual_q(graph, node)
        if rq is not None:
            node.attrs["residual"] = {**node.attrs["residual"], "q": rq}
    return graph
