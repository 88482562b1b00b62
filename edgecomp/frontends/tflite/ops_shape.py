"""RESHAPE and CONCATENATION."""
from __future__ import annotations

import math

from ...errors import UnsupportedError
from .registry import tflite_op


@tflite_op('RESHAPE', inputs=1)
def lower_reshape(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """reshape (an alias)."""
    r = t.r
    shape = t.shape
    if math.prod(shape(ins[0])) != math.prod(shape(outs[0])):
        raise r.bad(f"{where}: reshape {list(shape(ins[0]))} -> {list(shape(outs[0]))} changes the size")
    t._add("reshape", ins[:1], outs[:1], k, shape=tuple(shape(outs[0])))



@tflite_op('CONCATENATION', inputs=1)
def lower_concat(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """concat (inputs share the output's quantization)."""
    tfl, r = t.tfl, t.r
    shape = t.shape
    o = t._options(op, tfl.ConcatenationOptions)
    rank = len(shape(outs[0]))
    axis = int(o.Axis()) if o is not None else 0
    if not -rank <= axis < rank:
        raise r.bad(f"{where}: axis {axis} for rank {rank}")
    for i in ins:
        t._check_same_quant(i, outs[0], where)
    act = int(o.FusedActivationFunction()) if o is not None else 0
    if act:
        raise UnsupportedError("CONCATENATION with a fused activation", where=where,
                               fix="Apply the activation before concatenating")
    t._add("concat", [i for i in ins if i], outs[:1], k, axis=axis % rank)
