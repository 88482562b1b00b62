"""Requantization pass: float scales -> Q31 multipliers and shifts, as TFLite Micro computes them.

``requantize(graph)`` fills ``node.attrs["q"]`` of every int8 node (see
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
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import ModelError, UnsupportedError
from ..numerics import (SOFTMAX_SCALED_DIFF_INTEGER_BITS, calculate_input_radius, preprocess_softmax_scaling,
                        quantize_multiplier, quantize_multiplier_smaller_than_one_exp)

ADD_LEFT_SHIFT = 20  # TFLM add/sub int8


def _quant(graph: ir.Graph, node: ir.Node, name: str) -> ir.QuantParams:
    t = graph.tensors[name]
    if t.quant is None:
        raise ModelError(f"int8 tensor {name!r} has no quantization parameters", where=f"node {node.name!r}",
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
    """conv2d / depthwise_conv2d / fully_connected: per-channel multipliers and shifts."""
    qi = _quant(graph, node, node.inputs[0])
    qw = _quant(graph, node, node.inputs[1])
    qo = conv_out_quant(node) or _quant(graph, node, node.outputs[0])
    w = graph.tensors[node.inputs[1]]
    n_out = w.shape[0] if node.op in ("conv2d", "fully_connected") else w.shape[-1]
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


def _requant_q(graph: ir.Graph, node: ir.Node) -> dict:
    qi = _quant(graph, node, node.inputs[0])
    qo = _quant(graph, node, node.outputs[0])
    mult, shift = quantize_multiplier(_f32(qi.scale[0]) / _f32(qo.scale[0]))
    return {"multiplier": mult, "shift": shift, "input_offset": -int(qi.zero_point[0]),
            "output_offset": int(qo.zero_point[0])}


def node_q(graph: ir.Graph, node: ir.Node) -> dict | None:
    """The ``q`` attributes of one node, or None if the node needs none."""
    out = graph.tensors[node.outputs[0]]
    src = graph.tensors[node.inputs[0]] if node.inputs else out
    if out.dtype == "float32" or src.dtype == "float32":
        return None  # float ops, quantize float->int and dequantize need no integers
    if node.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        return _conv_q(graph, node)
    if node.op == "add":
        return add_q(_quant(graph, node, node.inputs[0]), _quant(graph, node, node.inputs[1]),
                     _quant(graph, node, node.outputs[0]))
    if node.op == "softmax":
        return _softmax_q(graph, node)
    if node.op == "quantize":
        return _requant_q(graph, node)
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
