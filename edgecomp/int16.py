"""int16 ("16x8") layers: the facts the interpreter (``interp_s16``) and the C emitter
(``backends/c/emit/int16.py``) share, written once.

An int16 layer reads or writes a non-constant int16 tensor; its int16 tensors are symmetric (zero
point 0); its clamp range is within int16; its requantization is *shift-only* when every
multiplier is exactly 2^30 (power-of-two scales).
"""
from __future__ import annotations

import numpy as np

from . import ir
from .errors import UnsupportedError

INT16_MIN, INT16_MAX = -32768, 32767
POW2_MULTIPLIER = 1 << 30  # an int16 layer whose multipliers are all 2^30 is shift-only


def is_s16(graph: ir.Graph, node: ir.Node) -> bool:
    """The node reads or writes a non-constant int16 tensor (the C runs it with ec_kernels_s16)."""
    names = [i for i in node.inputs if not graph.tensors[i].is_const] + list(node.outputs)
    return any(graph.tensors[n].dtype == "int16" for n in names)


def shift_only(q: dict) -> bool:
    """Every multiplier is 2^30: requantization is a shift."""
    return bool(np.all(np.asarray(q["multiplier"], dtype=np.int64) == POW2_MULTIPLIER))


def act_range(node: ir.Node) -> tuple[int, int]:
    """A node's clamp range within int16 (the whole range when it has none)."""
    act = node.attrs.get("act")
    lo, hi = act if act is not None else (None, None)
    lo = INT16_MIN if lo is None else max(int(lo), INT16_MIN)
    hi = INT16_MAX if hi is None else min(int(hi), INT16_MAX)
    return lo, hi


def check_tensors(node: ir.Node, *tensors: ir.Tensor) -> None:
    """int16 tensors with symmetric quantization, as the int16 kernels take them."""
    for t in tensors:
        if t.dtype != "int16":
            raise UnsupportedError(f"int16 {node.op} with a {t.dtype} tensor {t.name!r}", where=f"node {node.name!r}",
                                   fix="Quantize the model with int16 activations throughout (--precision int16)")
        if t.quant is None or np.any(np.asarray(t.quant.zero_point) != 0):
            raise UnsupportedError(f"int16 tensor {t.name!r} without symmetric quantization (zero point 0)",
                                   where=f"node {node.name!r}", fix="Quantize int16 activations symmetrically")
