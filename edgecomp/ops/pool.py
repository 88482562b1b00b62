"""max_pool2d and avg_pool2d: the interpreter's semantics (TFLM: the int8 average rounds half away
from zero over the in-bounds window, in and out in one quantization).

Beyond TFLite's pools (ONNX): ``dilation`` (dh, dw) spaces the window's taps; an average with
``count_include_pad`` divides by the taps inside the input padded by ``divisor_pad`` (t, l, b, r:
the explicit ONNX pads, where the padded values count as real zeros: the zero point in int8)
instead of by the in-bounds taps.  ``pad`` is the window geometry: its bottom and right may exceed
the explicit pads where ``ceil_mode`` makes a last window hang over the input.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..im2col import pad, windows
from .common import clamp_cast, fclamp, is_int


def tflite_window(attrs: dict) -> bool:
    """A pool TFLite (and the plain kernels) compute: no dilation, the average over in-bounds taps."""
    return tuple(attrs.get("dilation", (1, 1))) == (1, 1) and not attrs.get("count_include_pad")


def _count(attrs: dict, hw_in: tuple, hw_out: tuple, region) -> np.ndarray:
    """Taps of each window inside ``region`` = (t, l, b, r) around the input: (1, OH, OW, 1)."""
    t, left, b, r = region
    g = attrs["pad"]
    ones = np.ones((1, hw_in[0] + t + b, hw_in[1] + left + r, 1))
    ones = np.pad(ones, ((0, 0), (g[0] - t, max(g[2] - b, 0)), (g[1] - left, max(g[3] - r, 0)), (0, 0)))
    return windows(ones, tuple(attrs["kernel"]), tuple(attrs.get("stride", (1, 1))),
                   tuple(attrs.get("dilation", (1, 1))), hw_out).sum(axis=(4, 5))


@ir.define_op("max_pool2d", layout="rows")
@ir.define_op("avg_pool2d", layout="rows")
def pool(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    a = node.attrs
    kh, kw = a["kernel"]
    dil = tuple(a.get("dilation", (1, 1)))
    hw = (out.shape[1], out.shape[2])
    quant = is_int(out)
    if node.op == "max_pool2d":
        fill = np.iinfo(x.dtype).min if quant else -np.inf
        v = windows(pad(x, a["pad"], fill), (kh, kw), a["stride"], dil, hw).max(axis=(4, 5))
        return clamp_cast(v, a.get("act"), out.dtype) if quant else fclamp(v, a.get("act"))
    xs = windows(pad(x.astype(np.float64), a["pad"], 0.0), (kh, kw), a["stride"], dil, hw).sum(axis=(4, 5))
    cnt = _count(a, x.shape[1:3], hw, (0, 0, 0, 0))
    div = _count(a, x.shape[1:3], hw, a["divisor_pad"]) if a.get("count_include_pad") else cnt
    if not quant:
        return fclamp(xs / div, a.get("act"))
    acc = np.rint(xs).astype(np.int64)
    if a.get("count_include_pad"):  # padded taps are real zeros: the zero point
        zp = int(graph.tensors[node.inputs[0]].quant.zero_point[0])
        acc = acc + zp * np.rint(div - cnt).astype(np.int64)
    c = np.rint(div).astype(np.int64)
    num = np.where(acc > 0, acc + c // 2, acc - c // 2)
    v = np.sign(num) * (np.abs(num) // c)  # C division truncates toward zero
    return clamp_cast(v, a.get("act"), out.dtype)
