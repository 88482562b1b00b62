"""LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, RELU, RELU6, RELU_N1_TO_1 and PRELU.

int8: each unary builtin becomes a ``lut`` whose table ports TFLM's integer kernel
(``edgecomp.tables``); PRELU stays ``prelu`` (TFLM's two multipliers, alpha per element).
float32: ``unary`` (sigmoid, tanh, hard_swish, leaky_relu), ``clamp`` for the RELUs, ``prelu``.
"""
from __future__ import annotations

import math

from ...errors import UnsupportedError
from .registry import builtin_name, tflite_op

#: The output quantization TFLM's int8 kernel assumes (it does not rescale): (scale, zero point).
FIXED_OUTPUT = {"LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}
FLOAT_FN = {"LOGISTIC": "sigmoid", "TANH": "tanh", "HARD_SWISH": "hard_swish", "LEAKY_RELU": "leaky_relu"}
CLAMP = {"RELU": (0.0, math.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def _int8_io(t, ins, outs, where) -> bool:
    """True for int8 -> int8, False for float32 -> float32; refuses mixed types."""
    di, do = t._raw[ins[0]][0], t._raw[outs[0]][0]
    if di != do or di not in ("int8", "float32"):
        raise UnsupportedError(f"{di} input and {do} output", where=where,
                               fix="Use a fully int8 or a fully float32 model")
    if di == "int8":
        for n in (ins[0], outs[0]):
            if t._raw[n][2] is None:
                raise UnsupportedError(f"int8 tensor {n!r} without quantization", where=where,
                                       fix="Re-export a fully quantized model")
    return di == "int8"


@tflite_op('LOGISTIC', 'TANH', 'HARD_SWISH', 'LEAKY_RELU', 'RELU', 'RELU6', 'RELU_N1_TO_1', inputs=1)
def lower_activation(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid) -> None:
    """A standalone activation: lut (int8) or unary / clamp (float32)."""
    name = builtin_name(code)
    attrs = {}
    if name == "LEAKY_RELU":
        o = t._options(op, t.tfl.LeakyReluOptions)
        attrs["alpha"] = float(o.Alpha()) if o is not None else 0.2
    if not _int8_io(t, ins, outs, where):
        if name in CLAMP:
            t._add("clamp", ins[:1], outs[:1], k, act=CLAMP[name])
        else:
            t._add("unary", ins[:1], outs[:1], k, fn=FLOAT_FN[name], **attrs)
        return
    qo = t._raw[outs[0]][2]
    if name in FIXED_OUTPUT:
        s, z = FIXED_OUTPUT[name]
        if abs(float(qo.scale[0]) - s) > 1e-3 * s or int(qo.zero_point[0]) != z:
            raise UnsupportedError(f"int8 {name} output with scale {float(qo.scale[0])} and zero point "
                                   f"{int(qo.zero_point[0])} (TFLM's kernel writes scale {s}, zero point {z})",
                                   where=where, fix="Quantize with the TFLite converter's fixed output parameters")
    if name == "RELU6":  # TFLM clamps in the input's quantization and does not rescale
        t._check_same_quant(ins[0], outs[0], where)
    t._add("lut", ins[:1], outs[:1], k, fn=f"tflite:{name.lower()}", **attrs)


@tflite_op('PRELU', inputs=2)
def lower_prelu(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid) -> None:
    """prelu (x, alpha): alpha a constant broadcast against x."""
    x, alpha = ins[0], ins[1]
    if t._raw[alpha][3] is None:
        raise UnsupportedError("PRELU with a non-constant alpha", where=where, fix="Freeze alpha into the model")
    check_broadcast(t, [x, alpha], outs[0], where, first_full=True)
    if _int8_io(t, ins, outs, where) and t._raw[alpha][0] != "int8":
        raise UnsupportedError(f"int8 PRELU with a {t._raw[alpha][0]} alpha", where=where,
                               fix="Quantize alpha to int8 (the TFLite converter does)")
    t._add("prelu", ins[:2], outs[:1], k)


def check_broadcast(t, ins: list[str], out: str, where: str, first_full: bool = False) -> None:
    """The inputs broadcast (numpy's rules, at most 6 dimensions) to the output's shape."""
    import numpy as np
    shapes = [tuple(t.shape(i)) for i in ins]
    try:
        b = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise UnsupportedError(f"inputs of shapes {[list(s) for s in shapes]} do not broadcast", where=where,
                               fix="Give the inputs broadcastable shapes") from None
    if b != tuple(t.shape(out)) or (first_full and shapes[0] != b):
        raise t.r.bad(f"{where}: output shape {list(t.shape(out))} for inputs {[list(s) for s in shapes]}")
    if len(b) > 6:
        raise UnsupportedError(f"a {len(b)}-D broadcast", where=where, fix="Use at most 6 dimensions")
