"""Constant subgraphs of an ONNX model, computed at import.

Exporters write shape arithmetic as nodes on constants (PyTorch's ``F.pad`` builds its pads with
ConstantOfShape, Concat, Reshape, Slice, Transpose and Cast); ONNX Runtime folds them when it
runs the model.  :func:`constant_nodes` finds every node whose inputs are all constants (through
chains of them; Shape and Size of any tensor are constants, shapes being static), and :func:`fold`
computes one with ONNX's own reference implementation (``onnx.reference``), so these nodes need
no IR op and are never reported as unsupported.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import onnx

from ...errors import ModelError, UnsupportedError

#: Nodes with a lowering of their own for constants (a DequantizeLinear of a constant keeps its
#: integer form for the QDQ folding) or that never fold.
OWN = ("Constant", "Identity", "Dropout", "DequantizeLinear", "QuantizeLinear")
#: Ops whose result is a constant when their input's shape is static (PyTorch's ``chunk`` and
#: ``reshape(n, c // 2, ...)`` compute their sizes with Shape -> Gather -> Div -> ...).
SHAPE_OPS = ("Shape", "Size")
MAX_FOLDED = 1 << 22  # elements: shape arithmetic is tiny; a huge folded tensor is a mistake


def node_key(n) -> tuple:
    """A node's identity by content (protobuf hands out new wrapper objects, and shape inference a
    new model: ``id()`` of a node is no key)."""
    return n.op_type, tuple(n.input), tuple(n.output)


def constant_nodes(nodes, initializers) -> set[tuple]:
    """Keys (:func:`node_key`) of the nodes (in topological order) whose inputs are all constants
    and that compute a constant: everything but quantize (a quantized constant is an error the
    lowering names)."""
    const = set(initializers)
    out: set[tuple] = set()
    for n in nodes:
        ins = [i for i in n.input if i]
        if n.op_type == "QuantizeLinear" or n.domain not in ("", "ai.onnx"):
            continue
        if n.op_type in SHAPE_OPS or all(i in const for i in ins):
            out.add(node_key(n))
            const.update(o for o in n.output if o)
    return out


def _planned_size(c, n) -> float:
    """The number of elements node ``n`` would make (as far as known before computing it): the
    inferred output shapes, and for the ops whose size comes from their inputs' values the size
    those values ask for, so a hostile model cannot make the import allocate gigabytes."""
    sizes = [math.prod(c.shapes[o]) for o in n.output if o and c.shapes.get(o) is not None]
    v = [np.asarray(c.consts[i]) if i else None for i in n.input]
    try:
        if n.op_type == "ConstantOfShape":
            sizes.append(math.prod(float(d) for d in v[0].reshape(-1)))
        elif n.op_type == "Tile":
            sizes.append(v[0].size * math.prod(float(d) for d in v[1].reshape(-1)))
        elif n.op_type == "Expand":
            want = [float(d) for d in v[1].reshape(-1)]
            have = [1.0] * (len(want) - v[0].ndim) + [float(d) for d in v[0].shape]
            sizes.append(math.prod(max(a, b) for a, b in itertools.zip_longest(have, want, fillvalue=1.0)))
        elif n.op_type == "Range":
            start, limit, delta = (float(np.asarray(t).reshape(-1)[0]) for t in v[:3])
            sizes.append(abs((limit - start) / delta) if delta else math.inf)
    except (IndexError, TypeError, ValueError, AttributeError):
        pass  # malformed: the reference implementation names it
    return max(sizes, default=0)


def fold(c, n, opset: int, where: str) -> None:
    """Compute node ``n`` on constants into ``c.consts``."""
    if n.op_type in SHAPE_OPS:
        shape = c.shapes.get(n.input[0]) if n.input[0] not in c.consts else c.consts[n.input[0]].shape
        if shape is None:
            raise UnsupportedError(f"{n.op_type} of a tensor whose shape is not static", where=where,
                                   fix="Export the model with static shapes")
        shape = np.array(shape, np.int64)
        if n.op_type == "Size":
            v = np.array(np.prod(shape), np.int64)
        else:  # opset 15: start / end, negative from the end, clamped (as Python slicing)
            a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
            v = shape[int(a.get("start", 0)):a["end"] if "end" in a else None]
        c.consts[n.output[0]] = v
        c.shapes[n.output[0]] = tuple(v.shape)
        return
    planned = _planned_size(c, n)
    if planned > MAX_FOLDED:
        raise ModelError(f"{n.op_type} on constants would make {planned:,.0f} elements", where=where,
                         fix="Check the model; microcontroller models have far smaller tensors")
    try:
        from onnx.reference import ReferenceEvaluator
        outs = ReferenceEvaluator(n, opsets={"": opset}).run(None, {i: c.consts[i] for i in n.input if i})
    except Exception as e:  # the reference implementation's own errors: one clear message
        raise ModelError(f"cannot compute {n.op_type} on constants ({type(e).__name__}: {str(e)[:120]})",
                         where=where, fix="Check the model with onnx.checker and onnxruntime") from None
    for name, v in zip(n.output, outs):
        v = np.asarray(v)
        if v.size > MAX_FOLDED:
            raise ModelError(f"{n.op_type} on constants makes {v.size:,} elements", where=where,
                             fix="Check the model; microcontroller models have far smaller tensors")
        if name:
            c.consts[name] = v
            c.shapes[name] = tuple(v.shape)


def opset_of(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
