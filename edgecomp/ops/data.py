"""reshape (an alias: the same bytes) and concat (along ``axis`` of the IR layout)."""
from __future__ import annotations

import numpy as np

from .. import ir


@ir.define_op("reshape", layout="alias")
def reshape(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    return x.reshape((x.shape[0],) + tuple(node.attrs.get("shape", out.shape))[1:])


@ir.define_op("concat")
def concat(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    return np.concatenate([env[i] for i in node.inputs], axis=int(node.attrs["axis"]))


@ir.define_op("transpose")
def transpose(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Axes permuted (``perm``; the batch axis stays first): output axis k is input axis perm[k]."""
    perm = tuple(int(p) for p in node.attrs["perm"])
    if perm[0] != 0:
        raise ValueError(f"node {node.name!r}: a transpose must keep the batch axis first")
    return np.ascontiguousarray(np.transpose(env[node.inputs[0]], perm))
