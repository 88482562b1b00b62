"""Numpy reference interpreter of the IR: runs each node with its op's semantics
(:mod:`edgecomp.ops`, registered in :data:`edgecomp.ir.OPS`).

int8 graphs are computed exactly as TensorFlow Lite Micro's reference kernels do
(requantization rounding and saturation, average-pool rounding over the in-bounds
window, int8 softmax, add), so results are bit-exact with TFLM on imported
``.tflite`` models.  Nodes with int16 ("16x8") activations run in
:mod:`edgecomp.interp_s16`, exactly as the C kernels ``ec_kernels_s16.c`` do (their
own rounding, add and average pool; not TFLM's int8 ones).  float32 graphs are
computed in float64 per layer and stored as float32 (within ~1e-5 of LiteRT / ONNX Runtime).

Batches: every graph tensor's first axis is the batch; ``run`` takes N samples (rows), k model
invocations of a batch-B model as k * B rows (see :mod:`edgecomp.ir`, "The batch axis").
Ops may have several outputs (``split``): their functions return a tuple.
Integer dot products are done in float64 BLAS (exact: all partial sums < 2^53).

Fused residual add (optional, on conv2d / depthwise_conv2d / fully_connected):
``attrs["residual"] = {"tensor": skip, "act": (lo, hi), "q": <add q, see requantize.add_q>}``
and, for int8, ``attrs["conv_out_quant"]`` = the conv's own output QuantParams (or a
{"scale", "zero_point"} dict).  The conv result is computed with the node's own ``act``
and ``q`` (which targets ``conv_out_quant``), rounded to int8, then added to ``skip``
exactly like an ``add`` node with ``residual["q"]`` and clamped to ``residual["act"]``;
the node's output tensor holds the sum.  The skip tensor may also be listed in
``node.inputs`` after the weights/bias (so lifetimes and ``Graph.validate`` see it).
"""
from __future__ import annotations

import numpy as np

from . import interp_s16, ir
from .errors import ModelError, UnsupportedError
from .ops.common import add_int8, fclamp, is_int

CHUNK = 16  # samples per pass: bounds the im2col buffers


def _node(graph: ir.Graph, node: ir.Node, env: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The node's outputs (one array per output, each [rows, ...])."""
    d = ir.OPS.get(node.op)
    if d is None:
        raise UnsupportedError(f"op {node.op!r} in the reference interpreter", where=f"node {node.name!r}")
    if interp_s16.is_s16(graph, node) and not d.moves:  # int16 activations: ec_kernels_s16.c semantics
        ys = (interp_s16.run_node(graph, node, env),)
    else:
        y = d.run(graph, node, env)
        ys = y if isinstance(y, tuple) else (y,)
    if len(ys) != len(node.outputs):
        raise ModelError(f"{node.op} computed {len(ys)} outputs for {len(node.outputs)}", where=f"node {node.name!r}")
    res = node.attrs.get("residual")
    if res:
        out = graph.tensors[node.outputs[0]]
        y, skip = ys[0], env[res["tensor"]]
        if is_int(out):
            q = res.get("q")
            if q is None:
                from .passes.requantize import residual_q
                q = residual_q(graph, node)
            y = add_int8(y, skip, q, res.get("act"), out.dtype)
        else:
            y = fclamp(y.astype(np.float64) + skip, res.get("act"))
        ys = (y,)
    return tuple(y.reshape((-1,) + graph.tensors[o].shape[1:]) for o, y in zip(node.outputs, ys))


def _inputs(graph: ir.Graph, inputs) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict):
        if len(graph.inputs) != 1:
            raise ModelError(f"the graph has {len(graph.inputs)} inputs", fix="Pass a dict {name: array}")
        inputs = {graph.inputs[0]: inputs}
    env = {}
    for name in graph.inputs:
        if name not in inputs:
            raise ModelError(f"missing input {name!r}", fix=f"Pass arrays for {graph.inputs}")
        t = graph.tensors[name]
        x = np.asarray(inputs[name])
        if x.shape == t.shape[1:]:
            x = x[None]
        elif x.ndim == len(t.shape) + 1 and x.shape[1:] == t.shape:
            x = x.reshape((-1,) + t.shape[1:])  # [N, 1, ...]: one model-shaped sample per row
        if x.shape[1:] != t.shape[1:]:
            raise ModelError(f"input {name!r} has shape {x.shape}, the model takes [N, {', '.join(map(str, t.shape[1:]))}]",
                             fix="Reshape the input (NHWC layout)")
        want = ir.np_dtype(t.dtype)
        if x.dtype != want:
            if t.dtype != "float32" or not np.issubdtype(x.dtype, np.number):
                raise ModelError(f"input {name!r} is {x.dtype}, the model takes {t.dtype}",
                                 fix="Quantize the input with the input tensor's scale and zero point")
            x = x.astype(np.float32)
        env[name] = x
    return env


def _chunks(graph: ir.Graph, env0: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The samples in passes of CHUNK model invocations (k * batch rows of each input), or of CHUNK
    rows when the rows are not whole invocations (then ops across the batch axis refuse them)."""
    rows = {k: v.shape[0] for k, v in env0.items()}
    batch = {k: graph.tensors[k].shape[0] for k in env0}
    inv = {rows[k] // batch[k] for k in env0 if rows[k] % batch[k] == 0}
    if len(inv) == 1 and all(rows[k] % batch[k] == 0 for k in env0):
        k_all = inv.pop()
        return [{k: v[s * batch[k]:(s + CHUNK) * batch[k]] for k, v in env0.items()}
                for s in range(0, max(k_all, 1), CHUNK)]
    n = max(rows.values())
    return [{k: v[s:s + CHUNK] for k, v in env0.items()} for s in range(0, max(n, 1), CHUNK)]


def run(graph: ir.Graph, inputs: dict[str, np.ndarray] | np.ndarray, *,
        all_tensors: bool = False) -> dict[str, np.ndarray]:
    """Run the graph on N samples; return {output name: array [N, ...]} (every tensor if all_tensors)."""
    env0 = _inputs(graph, inputs)
    consts = {t.name: t.data for t in graph.constants()}
    parts: list[dict[str, np.ndarray]] = []
    for chunk in _chunks(graph, env0):
        env = {**consts, **chunk}
        for node in graph.nodes:
            env.update(zip(node.outputs, _node(graph, node, env)))
        keep = [k for k in env if k not in consts] if all_tensors else graph.outputs
        parts.append({k: env[k] for k in keep})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
