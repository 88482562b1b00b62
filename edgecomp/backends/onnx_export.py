"""Float IR graph -> ONNX model (NCHW inside, the IR's NHWC at the edges).

What it is for: running a float TFLite model (imported by ``frontends.tflite``) with
ONNX Runtime, e.g. to compare ONNX Runtime with LiteRT on the same network
(``bench/rpi.py``), or to quantize it with ONNX Runtime's tools.  The graph's
inputs and outputs keep the IR layout (NHWC for 4-D tensors), so the ONNX model
takes exactly the arrays the TFLite model takes.  Only float32 graphs: integer
graphs already have their exact C and TFLite references.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import UnsupportedError

__all__ = ["to_onnx"]

_NHWC_TO_NCHW = [0, 3, 1, 2]
_NCHW_TO_NHWC = [0, 2, 3, 1]


def to_onnx(graph: ir.Graph, path: str | Path, *, opset: int = 17) -> Path:
    """Write ``graph`` (float32 only) as an ONNX model at ``path``; returns the path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    # name in the IR -> (ONNX value name, layout of that value: "nchw" for 4-D activations else "plain")
    val: dict[str, str] = {}
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}__{counter[0]}"

    def const(name: str, arr: np.ndarray) -> str:
        n = fresh(name)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def act_clip(x: str, act, name: str) -> str:
        lo, hi = act if act is not None else (-math.inf, math.inf)
        if lo == -math.inf and hi == math.inf:
            return x
        if lo == 0 and hi == math.inf:
            y = fresh(name + "_relu")
            nodes.append(helper.make_node("Relu", [x], [y]))
            return y
        y = fresh(name + "_clip")
        lo_n = const(name + "_lo", np.array(-3.4e38 if lo == -math.inf else lo, dtype=np.float32))
        hi_n = const(name + "_hi", np.array(3.4e38 if hi == math.inf else hi, dtype=np.float32))
        nodes.append(helper.make_node("Clip", [x, lo_n, hi_n], [y]))
        return y

    for t in graph.tensors.values():
        if not t.is_const and t.dtype != "float32":
            raise UnsupportedError(f"ONNX export of a {t.dtype} tensor", where=f"tensor {t.name!r}",
                                   fix="Export float32 models only (int8 models have exact C/TFLite references)")

    g_inputs = []
    for name in graph.inputs:
        t = graph.tensors[name]
        g_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(t.shape)))
        if len(t.shape) == 4:
            v = fresh(name + "_nchw")
            nodes.append(helper.make_node("Transpose", [name], [v], perm=_NHWC_TO_NCHW))
            val[name] = v
        else:
            val[name] = name

    def c(name: str) -> np.ndarray:
        t = graph.tensors[name]
        return np.asarray(t.data, dtype=np.float32)

    for n in graph.nodes:
        a = n.attrs
        out_t = graph.tensors[n.outputs[0]]
        x = val.get(n.inputs[0]) if n.inputs else None
        y = fresh(n.outputs[0])
        if n.op in ("conv2d", "depthwise_conv2d"):
            w = c(n.inputs[1])
            pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
            kw_ = dict(strides=list(a.get("stride", (1, 1))), dilations=list(a.get("dilation", (1, 1))),
                       pads=[pt, pl, pb, pr])
            if n.op == "conv2d":
                wn = const(n.name + "_w", w.transpose(0, 3, 1, 2))  # OHWI -> OIHW
                group = 1
            else:
                in_c = graph.tensors[n.inputs[0]].shape[3]
                wn = const(n.name + "_w", w[0].transpose(2, 0, 1)[:, None])  # 1HW(C*M) -> (C*M)1HW
                group = in_c
            ins = [x, wn]
            if len(n.inputs) > 2 and n.inputs[2]:
                ins.append(const(n.name + "_b", c(n.inputs[2])))
            nodes.append(helper.make_node("Conv", ins, [y], group=group, **kw_))
            y = act_clip(y, a.get("act"), n.name)
        elif n.op == "fully_connected":
            w = c(n.inputs[1])
            src_t = graph.tensors[n.inputs[0]]
            if len(src_t.shape) == 4:  # flatten in the IR's NHWC order
                tx = fresh(n.name + "_nhwc")
                nodes.append(helper.make_node("Transpose", [x], [tx], perm=_NCHW_TO_NHWC))
                x = tx
            if len(src_t.shape) != 2 or src_t.shape[1] != w.shape[1]:
                fx = fresh(n.name + "_flat")
                nodes.append(helper.make_node("Reshape", [x, const(n.name + "_shape",
                                                                   np.array([-1, w.shape[1]], np.int64))], [fx]))
                x = fx
            ins = [x, const(n.name + "_w", w)]
            if len(n.inputs) > 2 and n.inputs[2]:
                ins.append(const(n.name + "_b", c(n.inputs[2])))
            nodes.append(helper.make_node("Gemm", ins, [y], transB=1))
            y = act_clip(y, a.get("act"), n.name)
        elif n.op == "add":
            nodes.append(helper.make_node("Add", [x, val[n.inputs[1]]], [y]))
            y = act_clip(y, a.get("act"), n.name)
        elif n.op in ("max_pool2d", "avg_pool2d"):
            pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
            kw_ = dict(kernel_shape=list(a["kernel"]), strides=list(a.get("stride", (1, 1))), pads=[pt, pl, pb, pr])
            if n.op == "avg_pool2d":
                kw_["count_include_pad"] = 0  # TFLite averages over the taps inside the image
            nodes.append(helper.make_node("MaxPool" if n.op == "max_pool2d" else "AveragePool", [x], [y], **kw_))
            y = act_clip(y, a.get("act"), n.name)
        elif n.op == "softmax":
            src = x
            beta = float(a.get("beta", 1.0))
            if beta != 1.0:
                sb = fresh(n.name + "_beta")
                nodes.append(helper.make_node("Mul", [x, const(n.name + "_b", np.array(beta, np.float32))], [sb]))
                src = sb
            nodes.append(helper.make_node("Softmax", [src], [y], axis=-1 if len(out_t.shape) != 4 else 1))
        elif n.op == "reshape":
            src_t = graph.tensors[n.inputs[0]]
            if len(src_t.shape) == 4:
                tx = fresh(n.name + "_nhwc")
                nodes.append(helper.make_node("Transpose", [x], [tx], perm=_NCHW_TO_NHWC))
                x = tx
            shape = np.array(out_t.shape, np.int64)
            if len(out_t.shape) == 4:
                r = fresh(n.name + "_r")
                nodes.append(helper.make_node("Reshape", [x, const(n.name + "_shape", shape)], [r]))
                nodes.append(helper.make_node("Transpose", [r], [y], perm=_NHWC_TO_NCHW))
            else:
                nodes.append(helper.make_node("Reshape", [x, const(n.name + "_shape", shape)], [y]))
        elif n.op == "concat":
            axis = int(a.get("axis", -1))
            if len(out_t.shape) == 4:
                axis = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1}[axis]
            nodes.append(helper.make_node("Concat", [val[i] for i in n.inputs], [y], axis=axis))
        elif n.op == "clamp":
            nodes.append(helper.make_node("Identity", [x], [y]))
            y = act_clip(y, a.get("act"), n.name)
        else:
            raise UnsupportedError(f"ONNX export of op {n.op!r}", where=f"node {n.name!r}",
                                   fix="Supported: conv2d, depthwise_conv2d, fully_connected, add, pools, "
                                       "softmax, reshape, concat, clamp")
        val[n.outputs[0]] = y

    g_outputs = []
    for name in graph.outputs:
        t = graph.tensors[name]
        if len(t.shape) == 4:
            nodes.append(helper.make_node("Transpose", [val[name]], [name], perm=_NCHW_TO_NHWC))
        else:
            nodes.append(helper.make_node("Identity", [val[name]], [name]))
        g_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(t.shape)))

    model = helper.make_model(helper.make_graph(nodes, graph.name or "model", g_inputs, g_outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)], producer_name="edgecomp")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
