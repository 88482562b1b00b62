"""AVERAGE_POOL_2D and MAX_POOL_2D (input and output share their quantization)."""
from __future__ import annotations

from .registry import AVERAGE_POOL_2D, tflite_op


@tflite_op('AVERAGE_POOL_2D', 'MAX_POOL_2D', inputs=1)
def lower_pool(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """avg_pool2d / max_pool2d."""
    tfl, r = t.tfl, t.r
    shape = t.shape
    o = t._options(op, tfl.Pool2DOptions)
    if o is None:
        raise r.bad(f"{where} has no options")
    xs = shape(ins[0])
    if len(xs) != 4:
        raise r.bad(f"{where}: input {list(xs)} must be 4-D")
    fh, fw, sh, sw = (int(o.FilterHeight()), int(o.FilterWidth()), int(o.StrideH()), int(o.StrideW()))
    t._bounded(where, filter=(fh, fw), stride=(sh, sw))
    t._check_same_quant(ins[0], outs[0], where)
    t._add("avg_pool2d" if code == AVERAGE_POOL_2D else "max_pool2d", ins[:1], outs[:1], k,
              kernel=(fh, fw), stride=(sh, sw), pad=t._pad(int(o.Padding()), xs, fh, fw, sh, sw, 1, 1),
              act=t._act(int(o.FusedActivationFunction()), outs[0], where))
