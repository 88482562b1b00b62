"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR: the IR ``resize`` op with the tables TensorFlow Lite
Micro's reference kernels compute (``align_corners``, ``half_pixel_centers``).

Nearest: TFLM's float32 source coordinate ``(y + offset) * scale``, floored (rounded half away
from zero with align_corners), clamped.  Bilinear int8: TFLM's integer ``ResizeBilinearInteger``
(``scale_10`` = the scale in 1/1024 rounded, coordinates and weights in 1/1024); float32: its float
coordinates.  Output size constant (TFLM requires it).
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedError
from .ops_data import const, node
from .registry import tflite_op


def nearest_index(n_in: int, n_out: int, align: bool, half: bool) -> list[int]:
    """TFLM's GetNearestNeighbor for each output index (float32 arithmetic, as the C++)."""
    f = np.float32
    scale = f(n_in - 1) / f(n_out - 1) if align and n_out > 1 else f(n_in) / f(n_out)
    off = f(0.5) if half else f(0.0)
    out = []
    for v in range(n_out):
        x = (f(v) + off) * scale
        i = int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1) if align else int(math.floor(x))
        i = min(i, n_in - 1)
        out.append(max(0, i) if half else i)
    return out


def bilinear_tables(n_in: int, n_out: int, align: bool, half: bool, integer: bool) -> tuple[list, list, list]:
    """([i0, i1], weight of i1 in 1/1024, weight of i1 as a float) per output index: TFLM's integer
    coordinates (``integer``: an int8 model) or its float ones; i0 == i1 gets weight 0."""
    idx, w, fw = [], [], []
    if integer:
        s10 = ((1 << 10) * n_in + n_out // 2) // n_out
        if align and n_out > 1:
            s10 = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
        for v in range(n_out):
            sv = v * s10 + s10 // 2 - (1 << 9) if half else v * s10
            i0 = max(int(sv / 1024), 0)  # C division truncates toward zero
            i1 = min(int((sv + 1023) / 1024), n_in - 1)
            if i0 > n_in - 1:
                raise UnsupportedError(f"bilinear resize {n_in} -> {n_out}: TFLM's integer kernel reads past the input")
            wi = 0 if i0 == i1 else sv - 1024 * i0
            idx.append((i0, i1))
            w.append(wi)
            fw.append(wi / 1024)
        return idx, w, fw
    f = np.float32
    fs = f(n_in - 1) / f(n_out - 1) if align and n_out > 1 else f(n_in) / f(n_out)
    for v in range(n_out):
        fv = (f(v) + f(0.5)) * fs - f(0.5) if half else f(v) * fs
        i0, i1 = max(int(math.floor(fv)), 0), min(int(math.ceil(fv)), n_in - 1)
        wf = float(f(fv) - f(i0)) if i0 != i1 else 0.0
        idx.append((i0, i1))
        w.append(int(round(wf * 1024)))
        fw.append(wf)
    return idx, w, fw


@tflite_op('RESIZE_NEAREST_NEIGHBOR', 'RESIZE_BILINEAR', inputs=2)
def lower_resize(t, op, k: int, code: int, ins, outs, where: str, hybrid) -> None:
    x, y = ins[0], outs[0]
    xs, ys = t.shape(x), t.shape(y)
    if len(xs) != 4 or len(ys) != 4 or xs[0] != ys[0] or xs[3] != ys[3]:
        raise t.r.bad(f"{where}: resize of {list(xs)} to {list(ys)}")
    size = const(t, ins[1], "output size", where).reshape(-1)
    if size.size != 2 or tuple(size) != tuple(ys[1:3]):
        raise t.r.bad(f"{where}: size {size.tolist()} for an output {list(ys)}")
    nearest = code == t.tfl.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR
    o = t._options(op, t.tfl.ResizeNearestNeighborOptions if nearest else t.tfl.ResizeBilinearOptions)
    align, half = (bool(o.AlignCorners()), bool(o.HalfPixelCenters())) if o is not None else (False, False)
    if nearest:
        node(t, f"resize_{k}", "resize", [x], [y], mode="nearest",
             index_h=tuple(nearest_index(xs[1], ys[1], align, half)),
             index_w=tuple(nearest_index(xs[2], ys[2], align, half)))
        return
    if align and half:
        raise t.r.bad(f"{where}: align_corners and half_pixel_centers together")
    integer = t._raw[y][0] != "float32"
    (ih, wh, fh), (iw, ww, fw) = (bilinear_tables(xs[1], ys[1], align, half, integer),
                                  bilinear_tables(xs[2], ys[2], align, half, integer))
    node(t, f"resize_{k}", "resize", [x], [y], mode="bilinear", index_h=tuple(ih), weight_h=tuple(wh),
         fweight_h=tuple(fh), index_w=tuple(iw), weight_w=tuple(ww), fweight_w=tuple(fw))
