"""The TFLite builtin-op registry: each ops_*.py module registers the lowering of its builtins."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def builtin_code(name: str) -> int:
    """The tflite.BuiltinOperator code of a builtin's name (e.g. "CONV_2D" -> 3)."""
    import tflite
    return int(getattr(tflite.BuiltinOperator, name))


def builtin_name(code: int) -> str:
    import tflite
    for k, v in vars(tflite.BuiltinOperator).items():
        if not k.startswith("_") and v == code:
            return k
    return f"builtin code {code}"


@dataclass(frozen=True)
class TfliteOp:
    name: str
    code: int
    lower: Callable
    inputs: int  # the inputs it needs at least
    check_dtypes: bool = True  # the reader refuses int16 / other tensors before lowering it


#: builtin code -> its lowering; filled by the ops_*.py modules.
TFLITE_OPS: dict[int, TfliteOp] = {}


def tflite_op(*names: str, inputs: int = 1, check_dtypes: bool = True):
    """Register the decorated function as the lowering of the builtins ``names``:
    ``fn(t, op, k, code, ins, outs, where, hybrid)`` with ``t`` the reader (its helpers: options,
    act, add, shape, pad, check_same_quant, ...)."""
    def deco(fn):
        for n in names:
            c = builtin_code(n)
            TFLITE_OPS[c] = TfliteOp(n, c, fn, inputs, check_dtypes)
        return fn
    return deco


ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D = 0, 1, 2, 3, 4
DEQUANTIZE, FULLY_CONNECTED, MAX_POOL_2D, RESHAPE, SOFTMAX, QUANTIZE = 6, 9, 17, 22, 25, 114
