"""Data movement: values moved, never changed (any element type; an int8 output keeps its input's
quantization, the frontends requantize around them where the scales differ).

reshape (an alias: the same bytes), concat, transpose, pad, slice, broadcast, split (several
outputs) and gather (constant indices).  Axes are the IR tensor's axes, the batch axis (0)
included: an op along it sees the rows as [k invocations, batch, ...] (:func:`.common.grouped`).
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import ModelError
from .common import grouped, ungroup

PAD_MODES = ("constant", "edge", "reflect")


@ir.define_op("reshape", layout="alias", moves=True)
def reshape(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    return x.reshape((-1,) + tuple(node.attrs.get("shape", out.shape))[1:])


@ir.define_op("concat", moves=True)
def concat(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    axis = int(node.attrs["axis"])
    if axis == 0:  # along the batch: per invocation
        return ungroup(np.concatenate([grouped(graph, i, env) for i in node.inputs], axis=1))
    return np.concatenate([env[i] for i in node.inputs], axis=axis)


@ir.define_op("transpose", moves=True)
def transpose(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Axes permuted (``perm``): output axis k is input axis perm[k]."""
    perm = tuple(int(p) for p in node.attrs["perm"])
    if perm[0] == 0:
        return np.ascontiguousarray(np.transpose(env[node.inputs[0]], perm))
    x = grouped(graph, node.inputs[0], env)
    return ungroup(np.ascontiguousarray(np.transpose(x, (0,) + tuple(p + 1 for p in perm))))


def pad_value(node: ir.Node, dtype) -> np.ndarray:
    """The constant a ``pad`` node writes, as ``dtype`` (an int8 / int16 pad: the raw integer)."""
    v = node.attrs.get("value", 0)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        if int(v) != v or not info.min <= int(v) <= info.max:
            raise ModelError(f"pad value {v} is not a {np.dtype(dtype).name}", where=f"node {node.name!r}")
        return np.asarray(int(v), dtype=dtype)
    return np.asarray(v, dtype=dtype)


@ir.define_op("pad", moves=True)
def pad(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """``pads`` [(before, after)] per axis; ``mode`` constant (``value``, raw), edge or reflect
    (the edge not repeated, as numpy and ONNX)."""
    x = grouped(graph, node.inputs[0], env)
    widths = [(0, 0)] + [(int(a), int(b)) for a, b in node.attrs["pads"]]
    mode = node.attrs.get("mode", "constant")
    if mode == "constant":
        return ungroup(np.pad(x, widths, mode="constant", constant_values=pad_value(node, x.dtype)))
    if mode not in PAD_MODES:
        raise ModelError(f"pad mode {mode!r}", where=f"node {node.name!r}")
    return ungroup(np.pad(x, widths, mode=mode))


def slice_indices(node: ir.Node, out_shape) -> list[np.ndarray]:
    """Per axis, the input index of each output index: begin + step * i."""
    return [int(b) + int(s) * np.arange(int(n)) for b, s, n in zip(node.attrs["begin"], node.attrs["step"], out_shape)]


def _take_all(x: np.ndarray, idx: list[np.ndarray]) -> np.ndarray:
    for k, ix in enumerate(idx):
        x = np.take(x, ix, axis=k + 1)
    return x


@ir.define_op("slice", moves=True)
def slice_(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """A strided slice: output index i of axis k reads input index begin[k] + step[k] * i (a step
    may be negative)."""
    out = graph.tensors[node.outputs[0]]
    return ungroup(_take_all(grouped(graph, node.inputs[0], env), slice_indices(node, out.shape)))


@ir.define_op("broadcast", moves=True)
def broadcast(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """The input's axes of size 1 repeated to the output's shape (the same rank)."""
    out = graph.tensors[node.outputs[0]]
    x = grouped(graph, node.inputs[0], env)
    return ungroup(np.ascontiguousarray(np.broadcast_to(x, (x.shape[0],) + tuple(out.shape))))


@ir.define_op("split", many_outputs=True, moves=True)
def split(graph: ir.Graph, node: ir.Node, env: dict) -> tuple[np.ndarray, ...]:
    """The input cut along ``axis`` into the outputs, in order (their sizes along the axis)."""
    axis = int(node.attrs["axis"])
    x = grouped(graph, node.inputs[0], env)
    sizes = [graph.tensors[o].shape[axis] for o in node.outputs]
    if sum(sizes) != x.shape[axis + 1]:
        raise ModelError(f"split of {x.shape[axis + 1]} into {sizes}", where=f"node {node.name!r}")
    cuts = np.cumsum(sizes)[:-1]
    return tuple(ungroup(np.ascontiguousarray(p)) for p in np.split(x, cuts, axis=axis + 1))


@ir.define_op("gather", moves=True)
def gather(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """Slices of the input along ``axis`` picked by constant int32 indices (the second input):
    output shape x[:axis] + indices.shape + x[axis + 1:]."""
    axis = int(node.attrs["axis"])
    idx = graph.tensors[node.inputs[1]].data.astype(np.int64)
    x = grouped(graph, node.inputs[0], env)
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[axis + 1]):
        raise ModelError(f"gather indices outside [0, {x.shape[axis + 1]})", where=f"node {node.name!r}")
    return ungroup(np.take(x, idx, axis=axis + 1))
