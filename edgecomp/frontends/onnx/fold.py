"""Constant folding of the shape arithmetic exporters write (PyTorch's LSTM / GRU initial states:
Shape -> Gather -> Unsqueeze -> Concat -> Expand of a zero constant).

:func:`fold_constants` evaluates, with ONNX's own reference evaluator, every node of a small set of
shape and arithmetic ops whose inputs are all constants (or a Shape of a tensor whose shape is
static), and replaces it by initializers; the rest of the graph is left as it is.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

FOLDABLE = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Expand", "ConstantOfShape", "Cast",
                      "Slice", "Reshape", "Range", "Mul", "Add", "Sub", "Div"})
MAX_FOLDED = 1 << 20  # elements: folding must not blow a model up


def fold_constants(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of ``model`` with its constant shape arithmetic folded into initializers (the model
    itself when there is nothing to fold)."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:  # Constant nodes count as constants (they stay in the graph)
        if n.op_type == "Constant" and len(n.output) == 1:
            try:
                from onnx.reference import ReferenceEvaluator
                consts[n.output[0]] = ReferenceEvaluator(_one(n, [])).run(None, {})[0]
            except Exception:
                pass
    folded: dict[str, np.ndarray] = {}
    keep = []
    for n in model.graph.node:
        val = _fold(n, consts, shapes) if n.op_type in FOLDABLE and n.domain in ("", "ai.onnx") else None
        if val is None:
            keep.append(n)
            continue
        for o, v in zip(n.output, val):
            consts[o] = folded[o] = np.asarray(v)
    if not folded:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in keep for i in n.input} | {o.name for o in m.graph.output}
    m.graph.initializer.extend(numpy_helper.from_array(v, o) for o, v in folded.items() if o in used)
    return m


def _one(n, inputs: list[tuple[str, np.ndarray]]) -> onnx.ModelProto:
    g = onnx.helper.make_graph(
        [n], "fold", [onnx.helper.make_tensor_value_info(nm, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for nm, v in inputs],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in n.output])
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])


def _fold(n, consts: dict, shapes: dict) -> list[np.ndarray] | None:
    ins = [i for i in n.input if i]
    if n.op_type == "Shape":
        s = shapes.get(n.input[0])
        if s is None or n.input[0] in consts:
            return None
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        return [np.array(s, dtype=np.int64)[a.get("start", 0):a.get("end", len(s))]]
    if not all(i in consts for i in ins):
        return None
    try:
        from onnx.reference import ReferenceEvaluator
        out = ReferenceEvaluator(_one(n, [(i, consts[i]) for i in ins])).run(None, {i: consts[i] for i in ins})
    except Exception:
        return None
    if any(np.asarray(v).size > MAX_FOLDED for v in out):
        return None
    return [np.asarray(v) for v in out]
