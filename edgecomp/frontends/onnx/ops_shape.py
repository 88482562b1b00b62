"""Shape ops: Flatten / Reshape / Squeeze / Unsqueeze (IR reshape: an alias) and Concat."""
from __future__ import annotations

import math

import numpy as np

from ...errors import ModelError, UnsupportedError
from .context import NCHW_TO_NHWC_AXIS, Ctx, nhwc, out_tensor, shape_of
from .registry import onnx_op


@onnx_op("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def lower_reshape(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    ins = list(n.input)
    op = n.op_type
    oshape = c.shapes.get(n.output[0])
    if oshape is None:
        raise ModelError(f"{op} output has no static shape", where=where)
    if op == "Reshape" and len(ins) > 1 and ins[1] in c.consts and c.consts[ins[1]].size <= 8:
        tgt = [int(v) for v in np.asarray(c.consts[ins[1]]).reshape(-1)]  # the target shape, as ONNX reads it
        tgt = [xs[i] if v == 0 and i < len(xs) else v for i, v in enumerate(tgt)]
        if -1 not in tgt and math.prod(tgt) != math.prod(xs):
            raise ModelError(f"Reshape from {tuple(xs)} to {tuple(tgt)} changes the number of elements",
                             where=where, fix="Check the model's shapes")
    if math.prod(oshape) != math.prod(xs):
        raise ModelError(f"{op} from {tuple(xs)} to {tuple(oshape)} changes the number of elements",
                         where=where, fix="Check the model's shapes")
    o = n.output[0]
    c.shapes[o] = oshape
    c.add_tensor(o, oshape)  # keep ONNX shape (2-D etc.); 4-D outputs are rare here
    if len(xs) == 4 and len(oshape) != 4:
        N, C, H, W = xs
        if H * W > 1 and C > 1:
            c.flat_chw[o] = (C, H, W)
    elif len(oshape) == 4 and len(xs) == 4 and tuple(oshape) != tuple(xs):
        raise UnsupportedError(f"{op} between 4-D shapes {xs} -> {oshape}", where=where)
    elif len(oshape) == 4:
        c.g.tensors[o].shape = nhwc(oshape)
    c.add_node(n.name, "reshape", [x], [o], shape=c.g.tensors[o].shape)


@onnx_op("Concat")
def lower_concat(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    ins = list(n.input)
    axis = a["axis"] % len(xs)
    names = [c.name(i) for i in ins]
    if any(i in c.consts for i in ins):
        raise UnsupportedError("Concat with a constant operand", where=where)
    shp = list(xs)
    shp[axis] = sum(shape_of(c, i)[axis] for i in ins)
    o = out_tensor(c, n, shp)
    c.add_node(n.name, "concat", names, [o], axis=NCHW_TO_NHWC_AXIS[axis] if len(xs) == 4 else axis)
