"""Small ONNX graphs built by hand for per-op tests against ONNX Runtime: float graphs, and QDQ
graphs written the way ORT's quantizer writes an island (input QuantizeLinear -> DequantizeLinear
-> the op -> QuantizeLinear -> DequantizeLinear), with the scales chosen by the test.  The
reference is ORT running the graph as written (``edgecomp.compress.quantize.reference_session``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper

from edgecomp import api, interp
from edgecomp.compress.quantize import reference_session
from edgecomp.frontends.onnx import from_onnx
from edgecomp.passes.requantize import requantize


def const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def float_model(shape, body, opset: int = 17, out_type=TP.FLOAT) -> onnx.ModelProto:
    """input [shape] -> body("input") -> output.  ``body(x)`` returns (nodes, output name, initializers)."""
    nodes, y, inits = body("input")
    nodes = list(nodes) + [h.make_node("Identity", [y], ["output"])]
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info("input", TP.FLOAT, list(shape))],
                     [h.make_tensor_value_info("output", out_type, None)], list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def qdq(x: str, scale: float, zp: int, tag: str) -> tuple[list, list, str]:
    """Quantize then dequantize x (int8): (nodes, initializers, the dequantized name)."""
    inits = [const(f"{tag}_s", scale), const(f"{tag}_z", zp, np.int8)]
    nodes = [h.make_node("QuantizeLinear", [x, f"{tag}_s", f"{tag}_z"], [f"{tag}_q"]),
             h.make_node("DequantizeLinear", [f"{tag}_q", f"{tag}_s", f"{tag}_z"], [f"{tag}_dq"])]
    return nodes, inits, f"{tag}_dq"


def qdq_model(shape, body, in_q: tuple[float, int], out_q: tuple[float, int] | None,
              opset: int = 17) -> onnx.ModelProto:
    """A QDQ island: Q/DQ of the input at ``in_q``, ``body``, Q/DQ of its output at ``out_q``
    (None: the body's output is not quantized, e.g. an int64 ArgMax)."""
    def wrapped(x):
        n1, i1, xd = qdq(x, *in_q, "in")
        nodes, y, inits = body(xd)
        if out_q is None:
            return n1 + list(nodes), y, i1 + list(inits)
        n2, i2, yd = qdq(y, *out_q, "out")
        return n1 + list(nodes) + n2, yd, i1 + list(inits) + i2
    return float_model(shape, wrapped, opset, out_type=TP.FLOAT if out_q is not None else TP.INT64)


def save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, str(path))
    return path


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    """ORT running the graph as written (no graph optimizations), on the whole batch at once."""
    s = reference_session(path)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def io_of(g, name: str) -> dict:
    t = g.tensors[name]
    return {"shape": list(t.shape), "dtype": t.dtype, "source_layout": "NCHW" if len(t.shape) == 4 else None,
            "quantization": t.quant.to_json() if t.quant is not None else None}


def to_onnx_layout(y: np.ndarray, shape) -> np.ndarray:
    """A graph output as edgecomp hands it over (NHWC for 4-D tensors) in ONNX order."""
    if len(shape) == 4:
        return y.reshape(shape[0], shape[2], shape[3], shape[1]).transpose(0, 3, 1, 2)
    return y.reshape(shape)


def import_run(path: Path, x: np.ndarray):
    """(graph, IR input, interpreter output in ONNX layout) of an ONNX file on ONNX-layout ``x``.
    ``x`` is one graph input (its first axis is the model's batch)."""
    g = requantize(from_onnx(path))
    xin = api.quantize_input(x, io_of(g, g.inputs[0])).reshape(g.tensors[g.inputs[0]].shape)
    y = interp.run(g, xin)[g.outputs[0]]
    return g, xin, y


def lsb_diff(got: np.ndarray, want_f: np.ndarray, g) -> int:
    """Largest difference in output LSB between edgecomp's int8 output and ORT's dequantized one."""
    o = g.tensors[g.outputs[0]]
    want = np.rint(want_f.astype(np.float64) / float(o.quant.scale[0])) + int(o.quant.zero_point[0])
    return int(np.abs(to_onnx_layout(got, want_f.shape).astype(np.int64) - want.astype(np.int64)).max())


# --------------------------------------------------------------------------- int16 QDQ files (test_int16.py)
def output_scale(path) -> float:
    """Scale of the QuantizeLinear that feeds the graph's output DequantizeLinear."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = m.graph.output[0].name
    dq = next(n for n in m.graph.node if out in n.output)
    assert dq.op_type == "DequantizeLinear"
    return float(inits[dq.input[1]])


def lsb(got, want, scale) -> float:
    return float(np.abs(got.reshape(want.shape) - want).max() / scale)


def interp_nchw(g, x: np.ndarray) -> np.ndarray:
    """edgecomp.interp on NCHW float samples, outputs back in the model's layout (as run_bundle gives them)."""
    y = interp.run(g, x.transpose(0, 2, 3, 1))[g.outputs[0]]
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def assert_c_equals_interpreter(c_out: np.ndarray, g, x: np.ndarray) -> np.ndarray:
    """The C's float outputs equal the interpreter's bit for bit (float32 (float)q * scale is one-to-one
    on int16 q, so this is 0 LSB on the int16 outputs); returns the interpreter's outputs."""
    y = interp_nchw(g, x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(c_out.reshape(y.shape), y)
    return y
