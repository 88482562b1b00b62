"""Pooling: MaxPool (dilations too), AveragePool (count_include_pad both ways), both with
ceil_mode, and GlobalAveragePool.

``ceil_mode=1`` follows the ONNX specification (and ONNX Runtime): the output size is rounded up,
but a window that would start in the right padding is dropped; the last windows may hang over
the input, which the IR's geometry padding (``pad`` bottom and right) covers -- the padded taps are
skipped by a max and by an average without count_include_pad, and the explicit pads alone count in
an average with it (``divisor_pad``).  ONNX's shape inference before opset 22 does not drop such a
window: where it disagrees with the specification the model's later shapes are wrong, so it is
refused.
"""
from __future__ import annotations

import math

from ... import ir
from ...errors import ModelError, UnsupportedError
from .context import Ctx, out_tensor, pads
from .layout import channels_last
from .one_d import as_2d, out_1d
from .registry import onnx_op


def pooled_size(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int, ceil: bool) -> int:
    """ONNX's output size of a pooled axis.

    >>> pooled_size(6, 3, 2, 1, 0, 0, True), pooled_size(6, 3, 2, 1, 0, 0, False)
    (3, 2)
    >>> pooled_size(5, 2, 2, 1, 1, 1, True)   # a 4th window would start in the right padding
    3
    """
    eff = (k - 1) * d + 1
    span = size + pad_begin + pad_end - eff
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + pad_begin:  # the last window starts in the right padding: dropped
        out -= 1
    return out


@onnx_op("MaxPool", "AveragePool", "GlobalAveragePool")
def lower_pool(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    one_d = len(xs) == 3  # MaxPool1d, AvgPool1d, AdaptiveAvgPool1d(1): the 2-D pools with H = 1 (one_d.py)
    if one_d:
        xs, a = as_2d(c, n, a, xs, where, weight=False)
    if len(xs) != 4:
        raise UnsupportedError(f"pooling on a {len(xs)}-D tensor", where=where,
                               fix="Pool 4-D (N, C, H, W) tensors (unsqueeze a 1-D signal to [N, C, 1, L])")
    if len(n.output) > 1 and n.output[1]:
        raise UnsupportedError("MaxPool with an Indices output", where=where, fix="Export without return_indices")
    x = channels_last(c, x, xs)
    attrs: dict = {}
    if n.op_type == "GlobalAveragePool":
        k, s, pad, op, (ho, wo) = (xs[2], xs[3]), (1, 1), (0, 0, 0, 0), "avg_pool2d", (1, 1)
    else:
        k = tuple(a["kernel_shape"])
        s = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        if len(k) != 2 or len(s) != 2 or len(dil) != 2:
            raise UnsupportedError(f"{len(k)}-D pooling", where=where, fix="Use 2-D pools")
        op = "max_pool2d" if n.op_type == "MaxPool" else "avg_pool2d"
        ceil = bool(a.get("ceil_mode", 0))
        explicit = pads(a, xs, k, s, dil, where)
        ho = pooled_size(xs[2], k[0], s[0], dil[0], explicit[0], explicit[2], ceil)
        wo = pooled_size(xs[3], k[1], s[1], dil[1], explicit[1], explicit[3], ceil)
        if ho < 1 or wo < 1:
            raise ModelError(f"a {k[0]}x{k[1]} window does not fit a {xs[2]}x{xs[3]} input", where=where,
                             fix="Check the model")
        # the geometry: bottom/right padding wide enough for the last windows
        eff = ((k[0] - 1) * dil[0] + 1, (k[1] - 1) * dil[1] + 1)
        pad = (explicit[0], explicit[1], max(explicit[2], (ho - 1) * s[0] + eff[0] - xs[2] - explicit[0]),
               max(explicit[3], (wo - 1) * s[1] + eff[1] - xs[3] - explicit[1]))
        if dil != (1, 1):
            if op == "avg_pool2d":
                raise UnsupportedError("dilated AveragePool", where=where, fix="Use dilations=1 for average pools")
            attrs["dilation"] = dil
        if op == "avg_pool2d" and a.get("count_include_pad", 0) and any(explicit):
            attrs["count_include_pad"] = True
            attrs["divisor_pad"] = explicit
        inferred = c.shapes.get(n.output[0])
        if inferred is not None and (1,) * (4 - len(inferred)) + tuple(inferred[2:]) != (ho, wo):
            raise UnsupportedError(
                f"{n.op_type} with ceil_mode=1 whose last window would start in the right padding: ONNX's "
                f"shape inference makes it {tuple(inferred[2:])}, the ONNX specification and ONNX Runtime "
                f"{(ho, wo)}", where=where,
                fix="Export with opset 22 or later, or change the padding so that no window starts in it")
    o = (out_1d if one_d else out_tensor)(c, n, (xs[0], xs[1], ho, wo))
    c.add_node(n.name, op, [x], [o], kernel=k, stride=s, pad=pad, act=(-math.inf, math.inf), **attrs)
