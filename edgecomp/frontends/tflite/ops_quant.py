"""QUANTIZE (float -> int8, or int8 -> int8: a requantize) and DEQUANTIZE."""
from __future__ import annotations

from .registry import tflite_op


@tflite_op('QUANTIZE', inputs=1)
def lower_quantize(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """quantize."""
    t._add("quantize", ins[:1], outs[:1], k)



@tflite_op('DEQUANTIZE', inputs=1)
def lower_dequantize(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """dequantize (a constant's is folded by the reader)."""
    t._add("dequantize", ins[:1], outs[:1], k)
