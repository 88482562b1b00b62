"""Unary activations: lut (every int8 -> int8 unary op), unary (float32 functions) and prelu.

* ``lut``: int8 -> int8 through a 256-entry table indexed by the input byte; the table is
  ``q["table"]`` (``passes/requantize.py`` builds it once from ``attrs["fn"]`` with
  :func:`edgecomp.tables.lut_table`, or takes ``attrs["table"]`` when a pass composed one).
  ``attrs["fn"]``: "tflite:logistic", ... (TFLM's integer algorithm) or a float function of
  :data:`edgecomp.tables.FLOAT_FNS` (an ONNX QDQ island, quantized as ONNX Runtime does).
* ``unary``: float32 -> float32, ``attrs["fn"]`` one of :data:`edgecomp.tables.FLOAT_FNS` with its
  parameters (``alpha``, ``beta``), computed in float64 and stored as float32.
* ``prelu`` (x, alpha): x where x >= 0, else alpha * x, alpha broadcast against x (numpy rules in
  the IR layout).  int8: TFLM's PRELU -- ``MultiplyByQuantizedMultiplier(x + input_offset, m1, s1)``
  for x >= zero point, else ``MultiplyByQuantizedMultiplier((x + input_offset) * w, m2, s2)`` with
  ``w = q["alpha"]`` (for an int8 alpha tensor its value plus its offset, as TFLM; for float slopes
  of an ONNX QDQ island the slopes in units of max|slope| / 2^14), plus the output offset.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from .. import tables
from ..errors import UnsupportedError
from .common import broadcast_inputs, clamp_cast, fclamp, is_int, q_of, stacked


def _size(graph: ir.Graph, node: ir.Node) -> int:
    return graph.tensors[node.outputs[0]].size


@ir.define_op("lut", layout="elementwise")
def lut(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """int8 -> int8 through a 256-entry table."""
    x = env[node.inputs[0]]
    if x.dtype != np.int8 or graph.tensors[node.outputs[0]].dtype != "int8":
        raise UnsupportedError("a lookup table other than int8 -> int8", where=f"node {node.name!r}")
    return tables.lookup(q_of(graph, node)["table"], x)


@ir.define_op("unary", layout="elementwise")
def unary(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """A float32 function of each element."""
    x = env[node.inputs[0]]
    if is_int(graph.tensors[node.outputs[0]]):
        raise UnsupportedError(f"integer {node.attrs.get('fn')} outside a lookup table", where=f"node {node.name!r}")
    return fclamp(tables.float_fn(node.attrs["fn"], x, node.attrs), node.attrs.get("act"))


@ir.define_op("prelu", layout="elementwise", macs=_size)
def prelu(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """x where x >= 0, else alpha * x."""
    (x, a), _ = broadcast_inputs(graph, node, env)
    out = graph.tensors[node.outputs[0]]
    if not is_int(out):
        return stacked(fclamp(np.where(x >= 0, x, x * a.astype(np.float64)), node.attrs.get("act")), out)
    q = q_of(graph, node)
    xi = x.astype(np.int64) + int(q["input_offset"])
    w = np.reshape(np.asarray(q["alpha"], np.int64), a.shape)
    pos = nx.multiply_by_quantized_multiplier(xi, q["multiplier_1"], q["shift_1"])
    neg = nx.multiply_by_quantized_multiplier(nx.wrap_int32(xi * w), q["multiplier_2"], q["shift_2"])
    y = clamp_cast(np.where(xi >= 0, pos, neg) + int(q["output_offset"]), node.attrs.get("act"), out.dtype)
    return stacked(y, out)
