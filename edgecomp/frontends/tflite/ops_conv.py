"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED."""
from __future__ import annotations

import math

from ...errors import UnsupportedError
from .registry import CONV_2D, tflite_op


@tflite_op('CONV_2D', 'DEPTHWISE_CONV_2D', inputs=2)
def lower_conv(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """conv2d / depthwise_conv2d (weights OHWI / 1HWC, TFLite layouts as the IR's)."""
    tfl, r = t.tfl, t.r
    shape = t.shape
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 and ins[2] else None
    if t._raw[w][3] is None:
        raise UnsupportedError("non-constant convolution weights", where=where, fix="Freeze the weights")
    xs, ws = shape(x), shape(w)
    if len(xs) != 4 or len(ws) != 4:
        raise r.bad(f"{where}: input {list(xs)} and weights {list(ws)} must be 4-D")
    cls = tfl.Conv2DOptions if code == CONV_2D else tfl.DepthwiseConv2DOptions
    o = t._options(op, cls)
    if o is None:
        raise r.bad(f"{where} has no options")
    sh, sw = int(o.StrideH()), int(o.StrideW())
    dh, dw = max(1, int(o.DilationHFactor())), max(1, int(o.DilationWFactor()))
    t._bounded(where, stride=(sh, sw), dilation=(dh, dw), kernel=(ws[1], ws[2]))
    kh, kw = ws[1], ws[2]
    pad = t._pad(int(o.Padding()), xs, kh, kw, sh, sw, dh, dw)
    attrs = {"stride": (sh, sw), "dilation": (dh, dw), "pad": pad,
             "act": t._act(int(o.FusedActivationFunction()), outs[0], where)}
    if hybrid:
        attrs["hybrid"] = hybrid
    if w in t._int4 and code == CONV_2D:
        attrs["packed_weights"] = {"bits": 4, "codebook": None}
    if code == CONV_2D:
        if ws[3] != xs[3]:
            raise UnsupportedError(f"grouped convolution (input {xs[3]} channels, filter {ws[3]})",
                                   where=where, fix="Use CONV_2D without groups or DEPTHWISE_CONV_2D")
        t._add("conv2d", [x, w] + ([b] if b else []), outs[:1], k, **attrs)
    else:
        if xs[3] == 0 or ws[3] % xs[3]:
            raise r.bad(f"{where}: {ws[3]} filter channels for {xs[3]} input channels")
        attrs["depth_multiplier"] = ws[3] // xs[3]
        t._bounded(where, depth_multiplier=(attrs["depth_multiplier"],))
        t._add("depthwise_conv2d", [x, w] + ([b] if b else []), outs[:1], k, **attrs)



@tflite_op('FULLY_CONNECTED', inputs=2)
def lower_fully_connected(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """fully_connected (weights [O, I]; the input flattened to rows)."""
    tfl, r = t.tfl, t.r
    shape = t.shape
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 and ins[2] else None
    if t._raw[w][3] is None or len(shape(w)) != 2:
        raise UnsupportedError("fully connected weights must be a constant [O, I] matrix", where=where,
                               fix="Freeze the weights")
    o = t._options(op, tfl.FullyConnectedOptions)
    act = 0
    if o is not None:
        if int(o.WeightsFormat()) != 0:
            raise UnsupportedError("shuffled fully-connected weights", where=where,
                                   fix="Convert with the default weights format")
        act = int(o.FusedActivationFunction())
    if math.prod(shape(x)) % shape(w)[1]:
        raise r.bad(f"{where}: input {list(shape(x))} does not flatten to rows of {shape(w)[1]}")
    t._add("fully_connected", [x, w] + ([b] if b else []), outs[:1], k,
           act=t._act(act, outs[0], where),
           **({"packed_weights": {"bits": 4, "codebook": None}} if w in t._int4 else {}))
