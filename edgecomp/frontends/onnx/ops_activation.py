"""Unary activations: Sigmoid, Tanh, HardSigmoid, HardSwish, LeakyRelu, Gelu, Erf (IR ``unary``) and
PRelu (IR ``prelu``, the slope a constant broadcast against the input).

In a QDQ graph each becomes an int8 ``lut`` in ``passes/qdq.fold_qdq`` (the float function on the
256 dequantized points, quantized as ONNX Runtime does); a chain of them between one
DequantizeLinear and one QuantizeLinear becomes one table.
"""
from __future__ import annotations

from ...errors import UnsupportedError
from .broadcast import const_in_layout, reference
from .context import Ctx, like_input
from .registry import onnx_op

UNARY = {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSigmoid": "hard_sigmoid", "HardSwish": "hard_swish",
         "LeakyRelu": "leaky_relu", "Erf": "erf"}


@onnx_op("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Gelu", "Erf")
def lower_unary(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    op = n.op_type
    attrs: dict = {}
    if op == "Gelu":
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else str(approx)
        if approx not in ("none", "tanh"):
            raise UnsupportedError(f"Gelu with approximate={approx!r}", where=where,
                                   fix="Use approximate='none' or 'tanh'")
        fn = "gelu" if approx == "none" else "gelu_tanh"
    else:
        fn = UNARY[op]
    if op == "HardSigmoid":
        attrs = {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))}
    elif op == "LeakyRelu":
        attrs = {"alpha": float(a.get("alpha", 0.01))}
    o = like_input(c, n, x, xs)
    c.add_node(n.name, "unary", [x], [o], fn=fn, **attrs)


@onnx_op("PRelu")
def lower_prelu(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    slope = c.consts.get(n.input[1])
    if slope is None:
        raise UnsupportedError("PRelu with a non-constant slope", where=where, fix="Export the slope as a constant")
    x = reference(c, x, xs)
    alpha = const_in_layout(c, x, xs, slope, where)
    o = like_input(c, n, x, xs)
    c.add_node(n.name, "prelu", [x, c.const(f"{n.output[0]}_slope", alpha)], [o])
