"""Pooling: MaxPool, AveragePool (count_include_pad=0, TFLite's semantics), GlobalAveragePool."""
from __future__ import annotations

import math

from ... import ir
from ...errors import UnsupportedError
from .context import Ctx, out_tensor, pads
from .layout import channels_last
from .one_d import as_2d, out_1d
from .registry import onnx_op


@onnx_op("MaxPool", "AveragePool", "GlobalAveragePool")
def lower_pool(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    one_d = len(xs) == 3  # MaxPool1d, AvgPool1d, AdaptiveAvgPool1d(1): the 2-D pools with H = 1 (one_d.py)
    if one_d:
        xs, a = as_2d(c, n, a, xs, where, weight=False)
    if len(xs) != 4:
        raise UnsupportedError("pooling on a non-4-D tensor", where=where)
    x = channels_last(c, x, xs)
    if n.op_type == "GlobalAveragePool":
        k, s, pad = (xs[2], xs[3]), (1, 1), (0, 0, 0, 0)
        op = "avg_pool2d"
    else:
        k = tuple(a["kernel_shape"])
        s = tuple(a.get("strides", [1, 1]))
        if a.get("ceil_mode", 0):
            raise UnsupportedError("pooling with ceil_mode=1", where=where, fix="Use ceil_mode=False")
        if tuple(a.get("dilations", [1, 1])) != (1, 1):
            raise UnsupportedError("dilated pooling", where=where)
        pad = pads(a, xs, k, s, (1, 1), where)
        op = "max_pool2d" if n.op_type == "MaxPool" else "avg_pool2d"
        if op == "avg_pool2d" and a.get("count_include_pad", 0) and any(pad):
            raise UnsupportedError("AveragePool with count_include_pad=1 and padding", where=where,
                                   fix="Use count_include_pad=False (TFLite semantics)")
    Ho = ir.conv_output_size(xs[2], k[0], s[0], 1, pad[0], pad[2])
    Wo = ir.conv_output_size(xs[3], k[1], s[1], 1, pad[1], pad[3])
    o = (out_1d if one_d else out_tensor)(c, n, (xs[0], xs[1], Ho, Wo))
    c.add_node(n.name, op, [x], [o], kernel=k, stride=s, pad=pad, act=(-math.inf, math.inf))
