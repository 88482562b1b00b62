"""Binary elementwise ops with broadcasting (numpy's rules, in the IR layout): mul, sub, maximum,
minimum, squared_difference (``add`` is in elementwise.py), and affine (x * scale + bias with
constant per-channel scale and bias).

int8 semantics are TFLM's reference kernels, whose broadcast (``BroadcastBinaryOpSimple``) applies
the same element function at every broadcast index:

* ``mul``: ``MultiplyByQuantizedMultiplier((a + o1) * (b + o2), m, s) + o_out``.
* ``sub``: TFLM's SUB (ADD's three rescales with ``left_shift`` 20, the scaled inputs subtracted).
* ``squared_difference``: both inputs rescaled (``left_shift`` 7), the difference squared, then
  ``MultiplyByQuantizedMultiplier``.
* ``maximum`` / ``minimum``: of the raw integers (the frontends give all three tensors one
  quantization, as the TFLite converter does).
* ``affine`` (x, scale, bias constants, float32): int8 ``MultiplyByQuantizedMultiplier((x + o_in) *
  w + b, m, s) + o_out`` with per-channel integers ``q["w"]``, ``q["b"]`` (``passes/requantize.py``
  forms them from the float constants with 2^k headroom: one rounding, within 1 LSB of the exact
  value); float32 ``x * scale + bias``.

``act`` (a fused activation, as TFLite's options give it) clamps the output.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from ..errors import UnsupportedError
from .common import broadcast_inputs, clamp_cast, fclamp, is_int, q_of, stacked


def _size(graph: ir.Graph, node: ir.Node) -> int:
    return graph.tensors[node.outputs[0]].size


def _rescale(v: np.ndarray, q: dict, k: int) -> np.ndarray:
    """Input k of TFLM's ADD / SUB / SQUARED_DIFFERENCE: (v + offset) << left_shift, rescaled."""
    x = (v.astype(np.int64) + int(q[f"input{k}_offset"])) * (1 << int(q["left_shift"]))
    return nx.multiply_by_quantized_multiplier_smaller_than_one_exp(x, q[f"input{k}_multiplier"], q[f"input{k}_shift"])


def _float(node: ir.Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    f = {"mul": np.multiply, "sub": np.subtract, "maximum": np.maximum, "minimum": np.minimum,
         "squared_difference": lambda u, v: (u - v) ** 2}[node.op]
    return fclamp(f(a, b), node.attrs.get("act"))


@ir.define_op("mul", layout="elementwise", macs=_size)
@ir.define_op("sub", layout="elementwise")
@ir.define_op("maximum", layout="elementwise")
@ir.define_op("minimum", layout="elementwise")
@ir.define_op("squared_difference", layout="elementwise", macs=_size)
def binary(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """a (op) b, broadcast."""
    (a, b), _ = broadcast_inputs(graph, node, env)
    out = graph.tensors[node.outputs[0]]
    return stacked(_binary(node, graph, a, b, out), out)


def _binary(node: ir.Node, graph: ir.Graph, a: np.ndarray, b: np.ndarray, out: ir.Tensor) -> np.ndarray:
    if not is_int(out):
        return _float(node, a, b)
    if out.dtype != "int8" or a.dtype != np.int8 or b.dtype != np.int8:
        raise UnsupportedError(f"{node.op} other than int8 x int8 -> int8", where=f"node {node.name!r}")
    act = node.attrs.get("act")
    if node.op in ("maximum", "minimum"):
        return clamp_cast((np.maximum if node.op == "maximum" else np.minimum)(a, b), act, "int8")
    q = q_of(graph, node)
    if node.op == "mul":
        prod = (a.astype(np.int64) + int(q["input1_offset"])) * (b.astype(np.int64) + int(q["input2_offset"]))
        v = nx.multiply_by_quantized_multiplier(prod, q["output_multiplier"], q["output_shift"])
    elif node.op == "sub":
        raw = nx.wrap_int32(_rescale(a, q, 1) - _rescale(b, q, 2))
        v = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(raw, q["output_multiplier"], q["output_shift"])
    else:  # squared_difference
        d = _rescale(a, q, 1) - _rescale(b, q, 2)
        v = nx.multiply_by_quantized_multiplier(nx.wrap_int32(d * d), q["output_multiplier"], q["output_shift"])
    return clamp_cast(v + int(q["output_offset"]), act, "int8")


@ir.define_op("affine", layout="elementwise", macs=_size)
def affine(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """x * scale + bias (constants broadcast against x)."""
    (x, s, b), _ = broadcast_inputs(graph, node, env)
    out = graph.tensors[node.outputs[0]]
    if not is_int(out):
        return stacked(fclamp(x.astype(np.float64) * s.astype(np.float64) + b.astype(np.float64),
                              node.attrs.get("act")), out)
    q = q_of(graph, node)
    w, b = (np.reshape(np.asarray(q[k], np.int64), s.shape) for k in ("w", "b"))
    acc = (x.astype(np.int64) + int(q["input_offset"])) * w + b
    v = nx.multiply_by_quantized_multiplier(nx.wrap_int32(acc), q["multiplier"], q["shift"])
    return stacked(clamp_cast(v + int(q["output_offset"]), node.attrs.get("act"), out.dtype), out)
