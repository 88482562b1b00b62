"""Reductions along axes: mean, argmax and l2_normalization (the interpreter's semantics).

int8 ``mean`` is TFLM's ``QuantizedMeanOrSum``: the int32 sum of the raw values, minus
``zero_point * count``, requantized once with TFLM's multiplier for ``s_in / (s_out * count)``
(``passes/requantize.mean_q``: ``(M << k) / count`` and ``shift - k``).  float32: the mean in
float64, stored as float32.  ``argmax`` returns the first index of the largest value (TFLM's
ARG_MAX, ONNX ArgMax with select_last_index=0) as int32.  int8 ``l2_normalization`` is TFLM's
(``GetInvSqrtQuantizedMultiplierExp`` then one requantization to scale 1/128, zero point 0).

Axes are IR axes (``attrs["axes"]``, ``attrs["axis"]``); the batch axis 0 is never reduced
(the interpreter runs samples in chunks: a reduction across them would depend on the chunk).
The axis helpers (:func:`edgecomp.axes.reduced_axes`, the C kernels' walk
:func:`edgecomp.axes.geometry`) are shared with the requantization pass and the emitters.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from ..axes import reduced_axes
from ..errors import UnsupportedError
from .common import clamp_cast, fclamp, is_int, q_of

def _keep(x: np.ndarray, node: ir.Node, out: ir.Tensor, v: np.ndarray) -> np.ndarray:
    return v.reshape((x.shape[0],) + tuple(out.shape[1:]))


@ir.define_op("mean")
def mean(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Mean over ``axes`` (int8: TFLM's, one requantization to the output scale)."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    axes = reduced_axes(node, x.ndim)
    if not is_int(out):
        return _keep(x, node, out, fclamp(x.astype(np.float64).mean(axis=axes), node.attrs.get("act")))
    if out.dtype != "int8" or x.dtype != np.int8:
        raise UnsupportedError("mean other than int8 -> int8", where=f"node {node.name!r}")
    q = q_of(graph, node)
    s = x.astype(np.int64).sum(axis=axes)
    shifted = nx.wrap_int32(s + int(q["input_offset"]) * int(q["count"]))
    v = nx.multiply_by_quantized_multiplier(shifted, int(q["multiplier"]), int(q["shift"])) + int(q["output_offset"])
    return _keep(x, node, out, clamp_cast(v, node.attrs.get("act"), out.dtype))


@ir.define_op("argmax")
def argmax(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Index of the largest value along ``axis`` (the first one on ties), as int32."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    (axis,) = reduced_axes(node, x.ndim)
    if out.dtype != "int32":
        raise UnsupportedError(f"argmax into {out.dtype}", where=f"node {node.name!r}", fix="Use an int32 output")
    if x.dtype == np.float32 and np.isnan(x).any():
        raise UnsupportedError("argmax of NaN values", where=f"node {node.name!r}")
    return _keep(x, node, out, np.argmax(x, axis=axis).astype(np.int32))


@ir.define_op("l2_normalization", layout="elementwise")
def l2_normalization(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """x / |x| along the last axis (int8: TFLM's, output scale 1/128 and zero point 0)."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    if not is_int(out):
        xd = x.astype(np.float32)
        n = np.sqrt((xd.astype(np.float64) ** 2).sum(axis=-1, keepdims=True))
        return (xd / np.maximum(n, 1e-6)).astype(np.float32)
    q = q_of(graph, node)
    d = x.astype(np.int64) + int(q["input_offset"])
    acc = nx.wrap_int32((d * d).sum(axis=-1, keepdims=True))
    m, s = nx.inv_sqrt_quantized_multiplier_exp(acc, -1)
    v = nx.multiply_by_quantized_multiplier(d, m, s + 7)
    return clamp_cast(v, None, out.dtype)
