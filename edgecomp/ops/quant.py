"""quantize (float -> int, or int8 -> int8: TFLite's requantize) and dequantize."""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from .common import clamp_cast, q_of


@ir.define_op("quantize", layout="elementwise")
def quantize(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    qo = out.quant
    if x.dtype == np.float32:
        return nx.affine_quantize(x, float(qo.scale[0]), int(qo.zero_point[0]), ir.np_dtype(out.dtype))
    q = q_of(graph, node)
    v = nx.multiply_by_quantized_multiplier(x.astype(np.int64) + q["input_offset"], q["multiplier"], q["shift"])
    return clamp_cast(v + q["output_offset"], None, out.dtype)


@ir.define_op("dequantize")
def dequantize(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    qi = graph.tensors[node.inputs[0]].quant
    return nx.dequantize(env[node.inputs[0]], float(qi.scale[0]), int(qi.zero_point[0]))
