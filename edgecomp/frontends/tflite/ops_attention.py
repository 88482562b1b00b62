"""BATCH_MATMUL (IR ``batch_matmul``; TFLite tensors are in the IR's layout): int8 bit-exact with
TFLM's reference kernel, or float32.  Transposed operands (adj_x / adj_y) are refused."""
from __future__ import annotations

from ...errors import UnsupportedError
from .registry import tflite_op


@tflite_op("BATCH_MATMUL", inputs=2)
def lower_batch_matmul(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str,
                       hybrid: dict | None) -> None:
    """out = lhs @ rhs over the last two axes, the axes before them broadcast."""
    o = t._options(op, t.tfl.BatchMatMulOptions)
    if o is not None and (o.AdjX() or o.AdjY()):
        raise UnsupportedError("BATCH_MATMUL with adj_x / adj_y (a transposed operand)", where=where,
                               fix="Convert without transposed operands (put a TRANSPOSE before it)")
    a, b, y = (tuple(t.shape(n)) for n in (ins[0], ins[1], outs[0]))
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2] or y[-2:] != (a[-2], b[-1]) or len(y) - 2 > 4:
        raise t.r.bad(f"{where}: BATCH_MATMUL of {list(a)} and {list(b)} into {list(y)}")
    if len(a) != len(y):
        raise UnsupportedError(f"BATCH_MATMUL with a rank-{len(a)} left operand for a rank-{len(y)} output",
                               where=where, fix="Give the left operand the output's rank")
    t._add("batch_matmul", ins[:2], outs[:1], k)
