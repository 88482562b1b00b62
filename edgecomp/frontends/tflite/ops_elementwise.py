"""ADD and SOFTMAX."""
from __future__ import annotations

import math

from ...errors import ModelError, UnsupportedError
from .registry import tflite_op


@tflite_op('ADD', inputs=2)
def lower_add(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """add (same shapes)."""
    tfl = t.tfl
    shape = t.shape
    if shape(ins[0]) != shape(ins[1]) or shape(ins[0]) != shape(outs[0]):
        raise UnsupportedError(f"ADD with broadcasting ({list(shape(ins[0]))} + {list(shape(ins[1]))})",
                               where=where, fix="Give both inputs the same shape")
    o = t._options(op, tfl.AddOptions)
    act = int(o.FusedActivationFunction()) if o is not None else 0
    t._add("add", ins[:2], outs[:1], k, act=t._act(act, outs[0], where))



@tflite_op('SOFTMAX', inputs=1)
def lower_softmax(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """softmax over the last axis."""
    tfl = t.tfl
    o = t._options(op, tfl.SoftmaxOptions)
    beta = float(o.Beta()) if o is not None else 1.0
    if not math.isfinite(beta) or not 0 < beta <= 1e6:
        raise ModelError(f"{where} has softmax beta {beta:g}; edgecomp (like TFLite Micro) needs a "
                         "positive, finite beta", where=t.where,
                         fix="Re-export the model (Keras softmax has beta 1)")
    out_q = t._raw[outs[0]][2]
    if t._raw[outs[0]][0] == "int8" and out_q is not None and (
            abs(float(out_q.scale[0]) - 1 / 256) > 1e-9 or int(out_q.zero_point[0]) != -128):
        raise UnsupportedError(f"{where}: an int8 softmax output must have scale 1/256 and zero point -128 "
                               f"(has {float(out_q.scale[0]):g}, {int(out_q.zero_point[0])})",
                               where=t.where, fix="Quantize with the TensorFlow Lite converter")
    t._add("softmax", ins[:1], outs[:1], k, beta=beta)
