"""max_pool2d and avg_pool2d: the interpreter's semantics (TFLM: the int8 average rounds half away
from zero over the in-bounds window, in and out in one quantization)."""
from __future__ import annotations

import numpy as np

from .. import ir
from ..im2col import pad, windows
from .common import clamp_cast, fclamp, is_int


@ir.define_op("max_pool2d", layout="rows")
@ir.define_op("avg_pool2d", layout="rows")
def pool(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    a = node.attrs
    kh, kw = a["kernel"]
    hw = (out.shape[1], out.shape[2])
    quant = is_int(out)
    if node.op == "max_pool2d":
        fill = np.iinfo(x.dtype).min if quant else -np.inf
        v = windows(pad(x, a["pad"], fill), (kh, kw), a["stride"], (1, 1), hw).max(axis=(4, 5))
        return clamp_cast(v, a.get("act"), out.dtype) if quant else fclamp(v, a.get("act"))
    xs = windows(pad(x.astype(np.float64), a["pad"], 0.0), (kh, kw), a["stride"], (1, 1), hw).sum(axis=(4, 5))
    ones = np.ones((1,) + x.shape[1:3] + (1,))
    cnt = windows(pad(ones, a["pad"], 0.0), (kh, kw), a["stride"], (1, 1), hw).sum(axis=(4, 5))
    if not quant:
        return fclamp(xs / cnt, a.get("act"))
    acc = np.rint(xs).astype(np.int64)
    c = np.rint(cnt).astype(np.int64)
    num = np.where(acc > 0, acc + c // 2, acc - c // 2)
    v = np.sign(num) * (np.abs(num) // c)  # C division truncates toward zero
    return clamp_cast(v, a.get("act"), out.dtype)
