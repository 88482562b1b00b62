"""add, clamp and softmax (along any axis): the interpreter's semantics (int8: TFLM's add and softmax)."""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from ..errors import UnsupportedError
from .common import add_int8, broadcast_inputs, clamp_any, fclamp, is_int, q_of, stacked


@ir.define_op("add", layout="elementwise")
def add(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """a + b (broadcast: numpy's rules in the IR layout, as TFLM's ADD)."""
    (x, b), _ = broadcast_inputs(graph, node, env)
    out = graph.tensors[node.outputs[0]]
    if is_int(out):
        return stacked(add_int8(x, b, q_of(graph, node), node.attrs.get("act"), out.dtype), out)
    return stacked(fclamp(x.astype(np.float64) + b, node.attrs.get("act")), out)


@ir.define_op("clamp", layout="elementwise")
def clamp(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    return clamp_any(env[node.inputs[0]], node.attrs.get("act"), graph.tensors[node.outputs[0]])


@ir.define_op("softmax", layout="elementwise")
def softmax(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Over ``axis`` (IR axis, default the last); int8 -> int8 with TFLM's fixed-point exp and
    reciprocal."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    axis = int(node.attrs.get("axis", -1)) % x.ndim
    if axis == 0:
        raise UnsupportedError("softmax over the batch axis", where=f"node {node.name!r}",
                               fix="Apply softmax over another axis (edgecomp runs one batch row at a time)")
    x = np.moveaxis(x, axis, -1)
    if is_int(out):
        if out.dtype != "int8" or x.dtype != np.int8:
            raise UnsupportedError("softmax other than int8 -> int8", where=f"node {node.name!r}")
        q = q_of(graph, node)
        y = nx.softmax_int8(x, q["input_multiplier"], q["input_left_shift"], q["diff_min"])
    else:
        beta = float(node.attrs.get("beta", 1.0))
        z = (x.astype(np.float64) - x.max(axis=-1, keepdims=True)) * beta
        e = np.exp(z)
        y = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(y, -1, axis))
