"""The integer parameters of the elementwise ops (part of the requantization pass, see
requantize.py): lut tables, prelu, mul, squared_difference and affine (sub takes add's: see
requantize.node_q).

Each is formed with the float / double casts of the TFLM Prepare function it mirrors (noted per
function), so the integers are the ones TFLM computes.  ``affine`` and the float slopes of an ONNX
``prelu`` have no TFLM counterpart: their integers keep 2^k of headroom so that the one rounding of
``MultiplyByQuantizedMultiplier`` is the only one that matters (within 1 LSB of the exact value).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ir
from .. import tables
from ..errors import UnsupportedError
from ..numerics import quantize_multiplier, quantize_multiplier_smaller_than_one_exp

#: Ops whose parameters :func:`elementwise_q` forms.
ELEMENTWISE_Q = ("lut", "prelu", "mul", "squared_difference", "affine")
SQUARED_DIFFERENCE_LEFT_SHIFT = 7  # TFLM SQUARED_DIFFERENCE int8
PRELU_SLOPE_BITS = 14  # float slopes in units of max|slope| / 2^14


def _f32(x) -> np.float32:
    return np.float32(x)


def _sz(qp: ir.QuantParams) -> tuple[float, int]:
    return float(_f32(qp.scale[0])), int(qp.zero_point[0])


def mul_q(qa: ir.QuantParams, qb: ir.QuantParams, qo: ir.QuantParams) -> dict:
    """TFLM MUL: double(s1) * double(s2) / double(s_out) as one multiplier."""
    (sa, za), (sb, zb), (so, zo) = _sz(qa), _sz(qb), _sz(qo)
    m, s = quantize_multiplier(sa * sb / so)
    return {"input1_offset": -za, "input2_offset": -zb, "output_offset": zo, "output_multiplier": m,
            "output_shift": s}


def squared_difference_q(qa: ir.QuantParams, qb: ir.QuantParams, qo: ir.QuantParams) -> dict:
    """TFLM SQUARED_DIFFERENCE: inputs rescaled with left shift 7, the square by a general multiplier."""
    (sa, za), (sb, zb), (so, zo) = _sz(qa), _sz(qb), _sz(qo)
    twice_max = 2.0 * float(max(_f32(sa), _f32(sb)))
    m1, s1 = quantize_multiplier_smaller_than_one_exp(sa / twice_max)
    m2, s2 = quantize_multiplier_smaller_than_one_exp(sb / twice_max)
    denom = float(_f32(_f32(1 << (2 * SQUARED_DIFFERENCE_LEFT_SHIFT)) * _f32(so)))
    mo, sho = quantize_multiplier(twice_max * twice_max / denom)
    return {"left_shift": SQUARED_DIFFERENCE_LEFT_SHIFT, "input1_offset": -za, "input2_offset": -zb,
            "output_offset": zo, "input1_multiplier": m1, "input1_shift": s1, "input2_multiplier": m2,
            "input2_shift": s2, "output_multiplier": mo, "output_shift": sho}


def prelu_q(qi: ir.QuantParams, alpha: ir.Tensor, qo: ir.QuantParams, where: str) -> dict:
    """TFLM PRELU (CalculatePreluParams) for an int8 alpha tensor; for float slopes (an ONNX QDQ
    island) the slopes as integers w = round(slope / max|slope| * 2^14) and the second multiplier
    s_in * max|slope| / (2^14 s_out)."""
    (si, zi), (so, zo) = _sz(qi), _sz(qo)
    m1, s1 = quantize_multiplier(si / so)
    if alpha.data is None:
        raise UnsupportedError("PRELU with a non-constant alpha", where=where, fix="Freeze alpha into the model")
    if alpha.dtype == "int8":
        if alpha.quant is None or alpha.quant.scale.size != 1:
            raise UnsupportedError("PRELU alpha without one per-tensor quantization", where=where,
                                   fix="Quantize alpha per tensor (the TFLite converter does)")
        sa, za = _sz(alpha.quant)
        w = alpha.data.astype(np.int64) - za
        m2, s2 = quantize_multiplier(si * sa / so)
        return {"input_offset": -zi, "output_offset": zo, "multiplier_1": m1, "shift_1": s1,
                "multiplier_2": m2, "shift_2": s2, "alpha": w, "alpha_offset": -za}
    a = alpha.data.astype(np.float64)
    amax = float(np.abs(a).max()) if a.size and np.abs(a).max() > 0 else 1.0
    w = np.rint(a / amax * (1 << PRELU_SLOPE_BITS)).astype(np.int64)
    m2, s2 = quantize_multiplier(float(si) * amax / ((1 << PRELU_SLOPE_BITS) * float(so)))
    return {"input_offset": -zi, "output_offset": zo, "multiplier_1": m1, "shift_1": s1,
            "multiplier_2": m2, "shift_2": s2, "alpha": w, "alpha_offset": 0}


def affine_q(qi: ir.QuantParams, scale: np.ndarray, bias: np.ndarray, qo: ir.QuantParams) -> dict:
    """int8 ``x * scale + bias``: acc = (x - z_in) * w + b with w = round(scale / max|scale| * 2^k),
    b = round(bias / s_out / U * 2^k), U = s_in * max|scale| / s_out (output steps per input step
    of the largest scale), requantized by U / 2^k.  k (at most 24) is the most headroom with
    |acc| < 2^30; a bias beyond the reach of any input saturates the output anyway and is capped."""
    (si, zi), (so, zo) = _sz(qi), _sz(qo)
    s = np.asarray(scale, np.float64)
    amax = float(np.abs(s).max()) if s.size and np.abs(s).max() > 0 else 1.0
    u = si * amax / so
    bias_steps = np.asarray(bias, np.float64) / so
    cap = 1024.0 + 255.0 * u
    bias_steps = np.clip(bias_steps, -cap, cap)
    need = 255.0 + float(np.abs(bias_steps).max(initial=0.0)) / u
    k = min(24, math.floor(math.log2((1 << 30) / need)))
    w = np.rint(s / amax * 2.0 ** k).astype(np.int64)
    b = np.rint(bias_steps / u * 2.0 ** k).astype(np.int64)
    m, sh = quantize_multiplier(u / 2.0 ** k)
    return {"input_offset": -zi, "output_offset": zo, "multiplier": m, "shift": sh, "w": w, "b": b}


def elementwise_q(graph: ir.Graph, node: ir.Node, quant) -> dict:
    """``q`` of an int8 lut / prelu / mul / squared_difference / affine node (``quant(graph,
    node, name)`` is requantize's check that a tensor has quantization parameters)."""
    where = f"node {node.name!r}"
    out = graph.tensors[node.outputs[0]]
    if out.dtype != "int8":
        raise UnsupportedError(f"{out.dtype} {node.op}", where=where, fix="Use int8 or float32")
    qi, qo = quant(graph, node, node.inputs[0]), quant(graph, node, node.outputs[0])
    if node.op == "lut":
        (si, zi), (so, zo) = _sz(qi), _sz(qo)
        return {"table": tables.lut_table(node.attrs, si, zi, so, zo)}
    if node.op == "prelu":
        return prelu_q(qi, graph.tensors[node.inputs[1]], qo, where)
    if node.op == "affine":
        return affine_q(qi, graph.tensors[node.inputs[1]].data, graph.tensors[node.inputs[2]].data, qo)
    qb = quant(graph, node, node.inputs[1])
    return {"mul": mul_q, "squared_difference": squared_difference_q}[node.op](qi, qb, qo)
