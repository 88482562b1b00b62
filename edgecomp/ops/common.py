"""What the interpreter's op semantics share: the integer parameters of a node, clamping,
TFLM's output requantization and int8 add."""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from ..errors import ModelError


def q_of(graph: ir.Graph, node: ir.Node) -> dict:
    """``node.attrs["q"]`` (set by the requantization pass), or computed the same way."""
    q = node.attrs.get("q")
    if q is None:
        from ..passes.requantize import node_q
        q = node_q(graph, node)
        if q is None:
            raise ModelError("int8 node without quantization parameters", where=f"node {node.name!r}")
    return q


def is_int(t: ir.Tensor) -> bool:
    return t.dtype != "float32"


def clamp_cast(v: np.ndarray, act, dtype: str) -> np.ndarray:
    """Integers clamped to ``act`` within ``dtype``'s range, as ``dtype``."""
    lo, hi = act if act is not None else (None, None)
    info = np.iinfo(ir.np_dtype(dtype))
    lo = info.min if lo is None else max(int(lo), info.min)
    hi = info.max if hi is None else min(int(hi), info.max)
    return np.clip(v, lo, hi).astype(ir.np_dtype(dtype))


def fclamp(v: np.ndarray, act) -> np.ndarray:
    """Floats clamped to ``act``, as float32."""
    if act is not None:
        lo, hi = act
        v = np.clip(v, lo, hi)
    return v.astype(np.float32)


def clamp_any(v: np.ndarray, act, out: ir.Tensor) -> np.ndarray:
    return clamp_cast(v, act, out.dtype) if is_int(out) else fclamp(v, act)


def requant_out(acc: np.ndarray, q: dict, act, dtype: str) -> np.ndarray:
    """TFLM's output stage: MultiplyByQuantizedMultiplier per channel, + zero point, clamp."""
    acc = nx.wrap_int32(acc)
    v = nx.multiply_by_quantized_multiplier(acc, np.asarray(q["multiplier"], np.int64),
                                            np.asarray(q["shift"], np.int64)) + int(q["output_offset"])
    return clamp_cast(v, act, dtype)


def add_int8(a: np.ndarray, b: np.ndarray, q: dict, act, dtype: str = "int8") -> np.ndarray:
    """TFLM reference int8 add (elementwise, same shapes)."""
    ls = 1 << int(q["left_shift"])
    a1 = (a.astype(np.int64) + q["input1_offset"]) * ls
    b1 = (b.astype(np.int64) + q["input2_offset"]) * ls
    sa = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(a1, q["input1_multiplier"], q["input1_shift"])
    sb = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(b1, q["input2_multiplier"], q["input2_shift"])
    raw = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(
        nx.wrap_int32(sa + sb), q["output_multiplier"], q["output_shift"]) + q["output_offset"]
    return clamp_cast(raw, act, dtype)


def broadcast_inputs(graph: ir.Graph, node: ir.Node, env: dict) -> tuple[list[np.ndarray], int]:
    """A broadcasting op's inputs, each as ``[S, *its model shape right-aligned to the output's rank]``
    for S samples run at once (the interpreter stacks samples on the first axis; an operand's model
    batch may be 1 where the output's is N), and S.  Constants count as one sample."""
    out = graph.tensors[node.outputs[0]]
    r = len(out.shape)
    samples = 1
    for i in node.inputs:
        t = graph.tensors[i]
        if not t.is_const and t.size:
            samples = max(1, env[i].size // t.size)
            break
    arrs = []
    for i in node.inputs:
        t = graph.tensors[i]
        shape = (1,) * (r - len(t.shape)) + tuple(t.shape)
        arrs.append(np.reshape(env[i], ((1 if t.is_const else samples),) + shape))
    return arrs, samples


def stacked(y: np.ndarray, out: ir.Tensor) -> np.ndarray:
    """A broadcast result [S, *model shape] back to the interpreter's stacked samples."""
    return y.reshape((-1,) + tuple(out.shape[1:]))
def grouped(graph: ir.Graph, name: str, env: dict) -> np.ndarray:
    """The rows of tensor ``name`` as [k, *shape]: k model invocations of its batch (for ops that
    mix the batch axis with the others; see :mod:`edgecomp.ir`, "The batch axis")."""
    x = env[name]
    shape = tuple(graph.tensors[name].shape)
    if x.shape[0] % shape[0]:
        raise ModelError(f"{x.shape[0]} rows of tensor {name!r}, whose batch is {shape[0]}",
                         fix=f"Pass a multiple of {shape[0]} samples (the model's batch)")
    return x.reshape((-1,) + shape)


def ungroup(y: np.ndarray) -> np.ndarray:
    """[k, B, ...] back to k * B rows."""
    return y.reshape((-1,) + y.shape[2:])
