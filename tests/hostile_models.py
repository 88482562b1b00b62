"""Small hostile models for the security tests (and scripts/fuzz_long.py's calibration target).

Each builder returns ONNX model bytes; all are valid enough to pass onnx.checker, so
what stops them is edgecomp's own checks (or the calibration child's limits).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, inits=(), opset=13, name="net") -> bytes:
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="hostile")
    return m.SerializeToString()


def gemm(names: dict | None = None) -> bytes:
    """x[1,8] -> Gemm -> y[1,3]; ``names`` may rename x, y, fc and the graph."""
    n = {"x": "x", "y": "y", "fc": "fc", "graph": "net", **(names or {})}
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32), "w")
    return _model([helper.make_node("Gemm", [n["x"], "w"], [n["y"]], name=n["fc"], transB=1)],
                  [helper.make_tensor_value_info(n["x"], TensorProto.FLOAT, [1, 8])],
                  [helper.make_tensor_value_info(n["y"], TensorProto.FLOAT, [1, 3])], [w], name=n["graph"])


def conv(pads=(1, 1, 1, 1), strides=(1, 1), dilations=(1, 1), kernel=(3, 3), hw=(4, 4)) -> bytes:
    """A 1-channel Conv of about 240 bytes whose attributes the caller chooses."""
    w = numpy_helper.from_array(np.full((1, 1) + tuple(kernel), 0.1, np.float32)
                                if int(np.prod(kernel)) <= 4096 else np.zeros((1, 1, 1, 1), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=list(pads), strides=list(strides),
                            dilations=list(dilations), kernel_shape=list(kernel))
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *hw])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "h", "w"])], [w])


def loop(trip_count: int = 10**15) -> bytes:
    """y = x + 1, trip_count times (a Loop whose body adds one): hangs whoever runs it."""
    one = numpy_helper.from_array(np.ones((1, 4), np.float32), "one")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4])], [one])
    inits = [numpy_helper.from_array(np.array(trip_count, np.int64), "M"),
             numpy_helper.from_array(np.array(True), "cond")]
    node = helper.make_node("Loop", ["M", "cond", "x"], ["y"], name="loop", body=body)
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)


def runtime_alloc(elements: int = 1 << 29) -> bytes:
    """A tensor of ``elements`` floats whose size only shows at run time (Shape * k -> ConstantOfShape)."""
    k = numpy_helper.from_array(np.array([1, elements // 4], np.int64), "k")
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Mul", ["s", "k"], ["big_shape"]),
             helper.make_node("ConstantOfShape", ["big_shape"], ["big"],
                              value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("ReduceSum", ["big"], ["r"], keepdims=1),
             helper.make_node("Add", ["x", "r"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [k])


def bad_elem_type() -> bytes:
    """An intermediate tensor declared with element type 999."""
    m = onnx.load_from_string(gemm())
    m.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]))
    m.graph.value_info[0].type.tensor_type.elem_type = 999
    return m.SerializeToString()


def bad_reshape() -> bytes:
    """Reshape [1, 8] to [5, 7] (40 elements from 8)."""
    shape = numpy_helper.from_array(np.array([5, 7], np.int64), "shape")
    w = numpy_helper.from_array(np.ones((3, 35), np.float32), "w")
    return _model([helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
                   helper.make_node("Gemm", ["r", "w"], ["y"], name="fc", transB=1)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3])], [shape, w])


#: The bombs of issue 20 item 2: name -> (bytes, calibration sample shape).
def calibration_bombs() -> dict[str, tuple[bytes, tuple[int, ...]]]:
    return {
        "loop_1e15": (loop(), (1, 4)),
        "conv_pads_8192": (conv(pads=(8192,) * 4), (1, 1, 4, 4)),
        "conv_pads_65536": (conv(pads=(65536,) * 4), (1, 1, 4, 4)),
        "conv_strides_0": (conv(strides=(0, 0)), (1, 1, 4, 4)),
        "conv_dilation_1e9": (conv(dilations=(10**9, 10**9)), (1, 1, 4, 4)),
        "conv_kernel_huge": (conv(kernel=(1 << 20, 1 << 20)), (1, 1, 4, 4)),
        "elem_type_999": (bad_elem_type(), (1, 8)),
        "bad_reshape": (bad_reshape(), (1, 8)),
    }
