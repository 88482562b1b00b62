"""The ONNX op registry: each ops_*.py module registers the lowering of its op types."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OnnxOp:
    name: str
    lower: Callable
    activation: bool  # lower(c, n, attrs, x, x_shape, where) with the first input an IR activation


#: ONNX op type -> its lowering; filled by the ops_*.py modules.
ONNX_OPS: dict[str, OnnxOp] = {}


def onnx_op(*op_types: str, activation: bool = True):
    """Register the decorated function as the lowering of ``op_types``.  With ``activation`` (the
    default) the first input must be an activation (not a constant): the function gets its IR name
    and ONNX shape, ``fn(c, n, attrs, x, xs, where)``; else ``fn(c, n, attrs, where)``."""
    def deco(fn):
        for t in op_types:
            ONNX_OPS[t] = OnnxOp(t, fn, activation)
        return fn
    return deco
