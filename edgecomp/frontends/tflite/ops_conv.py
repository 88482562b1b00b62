"""CONV_2D (grouped too), DEPTHWISE_CONV_2D, TRANSPOSE_CONV and FULLY_CONNECTED."""
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
    if w in t._int4 and code == CONV_2D and ws[3] == xs[3]:  # (a grouped int4 conv is unpacked to int8)
        attrs["packed_weights"] = {"bits": 4, "codebook": None}
    if code == CONV_2D:
        if ws[3] != xs[3]:  # grouped (TFLite 2.9+): input depth = filter depth * groups
            if ws[3] < 1 or xs[3] % ws[3] or ws[0] % (xs[3] // ws[3]):
                raise r.bad(f"{where}: filter depth {ws[3]} and {ws[0]} filters for {xs[3]} input channels")
            if hybrid:
                raise UnsupportedError("a grouped hybrid convolution", where=where,
                                       fix="Convert the model fully to int8, or keep it fully float32")
            attrs["groups"] = xs[3] // ws[3]
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


def _tflm_pad(padding: int, out_size: int, k: int, s: int, where: str, r) -> int:
    """TFLM's TRANSPOSE_CONV padding (ComputePaddingHeightWidth with the output size as the "input"):
    the padding a convolution from the transpose conv's output back to its input would have."""
    if padding == 0:  # SAME
        back = (out_size + s - 1) // s
    elif padding == 1:  # VALID
        back = (out_size + s - k) // s
    else:
        raise r.bad(f"{where}: unknown padding type {padding}")
    return max((back - 1) * s + k - out_size, 0) // 2


@tflite_op('TRANSPOSE_CONV', inputs=3)
def lower_transpose_conv(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str,
                         hybrid: dict | None) -> None:
    """transpose_conv2d: inputs (output_shape, weights [O, KH, KW, I], input, bias?)."""
    tfl, r = t.tfl, t.r
    shape = t.shape
    w, x = ins[1], ins[2]
    b = ins[3] if len(ins) > 3 and ins[3] else None
    if t._raw[w][3] is None:
        raise UnsupportedError("non-constant transpose convolution weights", where=where, fix="Freeze the weights")
    xs, ws, ys = shape(x), shape(w), shape(outs[0])
    if len(xs) != 4 or len(ws) != 4 or len(ys) != 4 or ws[3] != xs[3] or ws[0] != ys[3] or ys[0] != xs[0]:
        raise r.bad(f"{where}: input {list(xs)}, weights {list(ws)} and output {list(ys)} do not match")
    o = t._options(op, tfl.TransposeConvOptions)
    if o is None:
        raise r.bad(f"{where} has no options")
    sh, sw = int(o.StrideH()), int(o.StrideW())
    t._bounded(where, stride=(sh, sw), kernel=(ws[1], ws[2]))
    pt = _tflm_pad(int(o.Padding()), ys[1], ws[1], sh, where, r)
    pl = _tflm_pad(int(o.Padding()), ys[2], ws[2], sw, where, r)
    if b is not None and t._raw[b][0] not in ("int32", "float32"):
        raise UnsupportedError(f"a {t._raw[b][0]} transpose convolution bias", where=where,
                               fix="Use an int32 bias (int8 models) or a float32 one")
    pb, pr = (xs[1] - 1) * sh + ws[1] - pt - ys[1], (xs[2] - 1) * sw + ws[2] - pl - ys[2]  # cropped at the end
    t._add("transpose_conv2d", [x, w] + ([b] if b else []), outs[:1], k, stride=(sh, sw), pad=(pt, pl, pb, pr),
           act=t._act(int(o.FusedActivationFunction()), outs[0], where))
