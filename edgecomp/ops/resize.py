"""resize: nearest-neighbour and bilinear resizing of the two spatial axes of an NHWC tensor.

The frontends turn their op's rules (TFLite's align_corners / half_pixel_centers, ONNX's
coordinate transformation and nearest modes) into tables, so one op and one kernel serve both:

* ``mode="nearest"``: ``index_h`` [out_h], ``index_w`` [out_w]: the input row / column each output
  row / column copies.
* ``mode="bilinear"``: ``index_h`` [out_h, 2] (rows i0, i1), ``weight_h`` [out_h] (the weight of
  row i1 in units of 1/1024; row i0 has 1024 - w), ``fweight_h`` [out_h] (the same weight as a
  float, for float graphs); the same for ``_w``.  Where i0 == i1 the weight is 0.

int8 bilinear is TensorFlow Lite Micro's ``ResizeBilinearInteger``: the four products of the raw
int8 values and the 1/1024 weights summed in 2^-20 units, rounded half away from zero (an int8
output in the input's quantization).  float: the same blend in float64, stored as float32.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import ModelError, UnsupportedError
from .common import is_int

ONE = 1 << 10  # bilinear weights are in units of 1/1024


def bilinear_s8(x: np.ndarray, ih: np.ndarray, wh: np.ndarray, iw: np.ndarray, ww: np.ndarray) -> np.ndarray:
    """TFLM's integer blend of NHWC rows ``x`` (see the module docstring)."""
    xv = x.astype(np.int64)
    top, bot = xv[:, ih[:, 0]], xv[:, ih[:, 1]]
    wy = wh.astype(np.int64)[None, :, None, None]
    rows = top * (ONE - wy) + bot * wy  # [N, out_h, in_w, C]
    wx = ww.astype(np.int64)[None, None, :, None]
    v = rows[:, :, iw[:, 0]] * (ONE - wx) + rows[:, :, iw[:, 1]] * wx
    r = np.where(v > 0, v + (1 << 19), v - (1 << 19))
    return (np.sign(r) * (np.abs(r) >> 20)).astype(x.dtype)  # C division truncates toward zero


@ir.define_op("resize", moves=True)
def resize(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    a = node.attrs
    if x.ndim != 4:
        raise ModelError("resize of a tensor that is not 4-D NHWC", where=f"node {node.name!r}")
    ih, iw = np.asarray(a["index_h"], np.int64), np.asarray(a["index_w"], np.int64)
    if a["mode"] == "nearest":
        return np.ascontiguousarray(x[:, ih][:, :, iw])
    if a["mode"] != "bilinear":
        raise ModelError(f"resize mode {a['mode']!r}", where=f"node {node.name!r}")
    if is_int(out):
        if x.dtype != np.int8:
            raise UnsupportedError(f"{out.dtype} bilinear resize", where=f"node {node.name!r}",
                                   fix="Resize int8 or float32 tensors (or use nearest)")
        return bilinear_s8(x, ih, np.asarray(a["weight_h"]), iw, np.asarray(a["weight_w"]))
    fy = np.asarray(a["fweight_h"], np.float64)[None, :, None, None]
    fx = np.asarray(a["fweight_w"], np.float64)[None, None, :, None]
    xv = x.astype(np.float64)
    rows = xv[:, ih[:, 0]] * (1 - fy) + xv[:, ih[:, 1]] * fy
    return (rows[:, :, iw[:, 0]] * (1 - fx) + rows[:, :, iw[:, 1]] * fx).astype(np.float32)
