"""ADD, MUL, SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE (broadcast) and SOFTMAX."""
from __future__ import annotations

import math

from ...errors import ModelError, UnsupportedError
from .ops_activation import check_broadcast
from .registry import builtin_name, tflite_op


#: builtin -> (IR op, options table or None)
BINARY = {"ADD": ("add", "AddOptions"), "MUL": ("mul", "MulOptions"), "SUB": ("sub", "SubOptions"),
          "MAXIMUM": ("maximum", None), "MINIMUM": ("minimum", None), "SQUARED_DIFFERENCE": ("squared_difference", None)}


@tflite_op('ADD', 'MUL', 'SUB', 'MAXIMUM', 'MINIMUM', 'SQUARED_DIFFERENCE', inputs=2)
def lower_binary(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """add / mul / sub / maximum / minimum / squared_difference, broadcast as TFLM does (numpy's rules)."""
    name = builtin_name(code)
    ir_op, opts = BINARY[name]
    check_broadcast(t, ins[:2], outs[0], where)
    if all(t._raw[i][3] is not None for i in ins[:2]):
        raise UnsupportedError(f"{name} of two constants", where=where, fix="Fold the constants before conversion")
    dtypes = {t._raw[i][0] for i in ins[:2] + outs[:1]}
    if dtypes not in ({"int8"}, {"float32"}):
        raise UnsupportedError(f"{name} on {sorted(dtypes)} tensors", where=where,
                               fix="Use a fully int8 or a fully float32 model")
    if ir_op in ("maximum", "minimum"):  # TFLM compares the raw integers
        for i in ins[:2]:
            t._check_same_quant(i, outs[0], where)
    attrs = {}
    if opts is not None:
        o = t._options(op, getattr(t.tfl, opts))
        attrs["act"] = t._act(int(o.FusedActivationFunction()) if o is not None else 0, outs[0], where)
    t._add(ir_op, ins[:2], outs[:1], k, **attrs)


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
