"""ADD and SOFTMAX."""
from __future__ import annotations

from ...errors import UnsupportedError
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
    t._add("softmax", ins[:1], outs[:1], k, beta=float(o.Beta()) if o is not None else 1.0)
