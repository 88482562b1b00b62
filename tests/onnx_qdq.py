"""Small ONNX graphs written with onnx.helper for op-level tests: an op between QuantizeLinear /
DequantizeLinear pairs (the QDQ form ONNX Runtime's quantizer writes, with chosen scales) or in float.

``qdq_graph(op, shape, ...)`` -> a ModelProto ``x -> Q -> DQ -> op(x, consts...) -> Q -> DQ -> y``;
``float_graph(op, shape, ...)`` -> ``x -> op -> y``.  ``ort_run(model, x)`` runs ONNX Runtime on it
as written (graph optimizations off), one sample at a time.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20


def _init(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inits, shape, out_shape, opset=OPSET) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def float_graph(op: str, shape, consts=(), attrs=None, out_shape=None, const_first=False) -> onnx.ModelProto:
    """x -> op(x, *consts) -> y (a constant first with ``const_first``)."""
    inits = [_init(f"c{i}", np.asarray(c, np.float32)) for i, c in enumerate(consts)]
    ins = ["x"] + [f"c{i}" for i in range(len(consts))]
    if const_first:
        ins = ins[1:] + ins[:1]
    node = helper.make_node(op, ins, ["y"], **(attrs or {}))
    return _model([node], inits, shape, out_shape or shape)


def qdq_graph(op: str, shape, s_in: float, z_in: int, s_out: float, z_out: int, consts=(), attrs=None,
              out_shape=None, extra=()) -> onnx.ModelProto:
    """x -> Q -> DQ -> op(xq, *consts) -> Q -> DQ -> y; ``extra``: more (op, attrs, consts) after the
    first op, each between its own Q/DQ pair with the same output parameters (chains)."""
    inits = [_init("s_in", np.float32(s_in)), _init("z_in", np.int8(z_in)), _init("s_out", np.float32(s_out)),
             _init("z_out", np.int8(z_out))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"])]
    prev = "xd"
    for k, (o, a, cs) in enumerate([(op, attrs, consts)] + list(extra)):
        names = []
        for i, c in enumerate(cs):
            inits.append(_init(f"c{k}_{i}", np.asarray(c, np.float32)))
            names.append(f"c{k}_{i}")
        nodes.append(helper.make_node(o, [prev] + names, [f"f{k}"], **(a or {})))
        nodes += [helper.make_node("QuantizeLinear", [f"f{k}", "s_out", "z_out"], [f"q{k}"]),
                  helper.make_node("DequantizeLinear", [f"q{k}", "s_out", "z_out"], [f"d{k}"])]
        prev = f"d{k}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    return _model(nodes, inits, shape, out_shape or shape)


def ort_run(model: onnx.ModelProto, samples: np.ndarray) -> np.ndarray:
    """ONNX Runtime on each sample (``samples[i]`` a whole model input, batch axis included)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"x": x})[0] for x in samples])


def ir_input(g, samples: np.ndarray) -> np.ndarray:
    """ONNX samples (n, *model shape) as the IR graph's input: the batches stacked, NHWC for 4-D,
    quantized as QuantizeLinear when the graph's input is int8."""
    t = g.tensors[g.inputs[0]]
    v = samples.reshape((-1,) + samples.shape[2:])
    if v.ndim == 4:
        v = v.transpose(0, 2, 3, 1)
    if t.dtype == "int8":
        sc, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
        v = np.clip(np.rint(v.astype(np.float32) / np.float32(sc)) + z, -128, 127).astype(np.int8)
    return np.ascontiguousarray(v)


def onnx_out(y: np.ndarray, shape) -> np.ndarray:
    """The IR graph's output (batches stacked, NHWC for 4-D) as ONNX samples (n, *shape)."""
    if y.ndim == 4:
        y = y.transpose(0, 3, 1, 2)
    return y.reshape((-1,) + tuple(shape))


def quantized(y: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """A dequantized reference output back to its integers."""
    return np.rint(np.asarray(y, np.float32) / np.float32(scale)).astype(np.int32) + int(zp)
