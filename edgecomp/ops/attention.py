"""The attention family: batch_matmul (both operands may be activations) and layer_norm.

``batch_matmul``: numpy's ``matmul`` of the two operands' model shapes (the ONNX ``MatMul`` of
rank >= 2: the last two axes are the matrices, the axes before them broadcast), each operand in
ONNX order (the frontend reads them so).  An activation operand has the output's rank (its axis 0
is the batch); a constant operand may have fewer axes (right-aligned, numpy's rule).  float32:
each dot product in float64, stored as float32.  int8: TFLM's reference ``BATCH_MATMUL`` (int32 sums
of ``(a - za) * (b - zb)``, one ``MultiplyByQuantizedMultiplier`` by ``s_a * s_b / s_out`` as
``passes/requantize.bmm_q`` computes it, + the output zero point, clamped).  A QDQ MatMul of two
activations is not folded into it (``passes/qdq.py``): it runs float between its dequantize and
quantize, as ONNX Runtime runs the QDQ graph.

``layer_norm``: over the trailing ``count`` elements of each row (the ONNX
``LayerNormalization`` axes ``axis..rank-1``, contiguous in ONNX order): ``(x - mean) /
sqrt(var + epsilon) * scale + bias`` with the population variance, in float64, stored as float32.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import UnsupportedError
from .. import numerics as nx
from .common import clamp_cast, is_int, q_of


def _operand(graph: ir.Graph, name: str, env: dict, rank: int) -> np.ndarray:
    """[S, *model shape right-aligned to rank] (S samples of an activation, 1 for a constant)."""
    t = graph.tensors[name]
    x = env[name]
    shape = (1,) * (rank - len(t.shape)) + tuple(t.shape)
    if t.is_const:
        return np.reshape(x, (1,) + shape)
    if len(t.shape) != rank:
        raise UnsupportedError(f"batch_matmul operand {name!r} of rank {len(t.shape)} for a rank-{rank} output",
                               where=f"tensor {name!r}", fix="Give both activation operands the output's rank")
    return np.reshape(x, (-1,) + shape)


def _bmm_macs(graph: ir.Graph, node: ir.Node) -> int:
    a = graph.tensors[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    return int(out.size) * int(a.shape[-1])


@ir.define_op("batch_matmul", macs=_bmm_macs)
def batch_matmul(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """a @ b over the last two axes, the axes before them broadcast (numpy's matmul)."""
    out = graph.tensors[node.outputs[0]]
    r = len(out.shape)
    if is_int(out):
        if out.dtype != "int8" or any(graph.tensors[i].dtype != "int8" for i in node.inputs[:2]):
            raise UnsupportedError(f"{out.dtype} batch_matmul", where=f"node {node.name!r}",
                                   fix="Use int8 operands and output, or keep the matmul in float32")
        q = q_of(graph, node)  # TFLM's BATCH_MATMUL: int32 sums of offset products, one requantization
        a = _operand(graph, node.inputs[0], env, r).astype(np.int64) + int(q["lhs_offset"])
        b = _operand(graph, node.inputs[1], env, r).astype(np.int64) + int(q["rhs_offset"])
        acc = nx.wrap_int32(np.matmul(a, b))
        v = nx.multiply_by_quantized_multiplier(acc, int(q["multiplier"]), int(q["shift"])) + int(q["output_offset"])
        return clamp_cast(v, node.attrs.get("act"), out.dtype).reshape((-1,) + tuple(out.shape[1:]))
    a = _operand(graph, node.inputs[0], env, r).astype(np.float64)
    b = _operand(graph, node.inputs[1], env, r).astype(np.float64)
    y = np.matmul(a, b).astype(np.float32)
    return y.reshape((-1,) + tuple(out.shape[1:]))


@ir.define_op("layer_norm", layout="elementwise",
              macs=lambda g, n: 4 * int(g.tensors[n.outputs[0]].size))
def layer_norm(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Normalize each run of ``count`` trailing elements; then * scale + bias (constants of ``count``)."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    if is_int(out):
        raise UnsupportedError(f"{out.dtype} layer_norm", where=f"node {node.name!r}",
                               fix="Keep LayerNormalization in float32")
    count = int(node.attrs["count"])
    eps = float(node.attrs.get("epsilon", 1e-5))
    rows = x.astype(np.float64).reshape(-1, count)
    mean = rows.mean(axis=1, keepdims=True)
    var = ((rows - mean) ** 2).mean(axis=1, keepdims=True)
    y = (rows - mean) / np.sqrt(var + eps)
    scale = env[node.inputs[1]].astype(np.float64).reshape(1, count)
    y = y * scale
    if len(node.inputs) > 2 and node.inputs[2]:
        y = y + env[node.inputs[2]].astype(np.float64).reshape(1, count)
    return y.astype(np.float32).reshape(x.shape)
