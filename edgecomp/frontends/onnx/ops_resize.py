"""Resize and Upsample: the IR ``resize`` op (two spatial axes of a 4-D tensor, NHWC), its tables
computed from ONNX's rules as ONNX Runtime's CPU kernel evaluates them (float32 coordinates).

* coordinate_transformation_mode: half_pixel (default), pytorch_half_pixel, align_corners,
  asymmetric, tf_half_pixel_for_nn, half_pixel_symmetric (linear only: on 7 -> 4 by 0.6 ONNX
  Runtime's nearest picks pixel 0 where its own float formula gives 0.5000002, i.e. pixel 1);
* nearest: nearest_mode round_prefer_floor (default), round_prefer_ceil, floor, ceil, and the
  opset-10 / Upsample rule (truncate; ceil when downsampling);
* linear: the source coordinate clamped to the input, the two neighbours and the fraction as the
  weight (int8: in 1/1024, rounded; the blend rounded half away from zero: within 1 LSB of ONNX
  Runtime's float blend).

Cubic, tf_crop_and_resize, antialias and keep_aspect_ratio_policy other than stretch are refused.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ModelError, UnsupportedError
from .context import Ctx, out_tensor
from .layout import channels_last
from .registry import onnx_op

F = np.float32
MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
         "half_pixel_symmetric")


def source_coordinate(v: int, scale: float, n_in: int, n_out: int, mode: str) -> np.float32:
    """ONNX Runtime's original coordinate of output index v (float32 arithmetic)."""
    x, s = F(v), F(scale)
    if mode == "asymmetric":
        return x / s
    if mode == "pytorch_half_pixel":
        return (x + F(0.5)) / s - F(0.5) if n_out > 1 else F(0.0)
    if mode == "tf_half_pixel_for_nn":
        return (x + F(0.5)) / s
    if mode == "align_corners":
        return F(0.0) if n_out == 1 else x * F(n_in - 1) / F(n_out - 1)
    if mode == "half_pixel_symmetric":  # the offset in float32, the rest in double (ORT's 0.5 literals)
        offset = F(n_in) / F(2) * (F(1) - F(n_out) / (s * F(n_in)))
        return F(float(offset) + (float(x) + 0.5) / float(s) - 0.5)
    return (x + F(0.5)) / s - F(0.5)  # half_pixel


def nearest_pixel(x: np.float32, rule: str, downsample: bool) -> int:
    if rule == "simple":
        return int(math.ceil(x)) if downsample else int(x)  # C cast truncates
    if rule == "floor":
        return int(math.floor(x))
    if rule == "ceil":
        return int(math.ceil(x))
    half = math.floor(float(x)) + 0.5
    if abs(float(x) - half) <= 2 * float(np.spacing(F(abs(x)))):
        # within 2 float32 ulps of a half: a half.  ONNX Runtime's kernel lands exactly on the half
        # where IEEE division of the float32 scale does not (e.g. 2 / (4/7) = 3.4999998, which it
        # rounds to 4 under round_prefer_ceil): measured on every size pair up to 11 -> 15
        x = F(half)
    rounded = int(math.floor(abs(float(x)) + 0.5)) * (1 if x >= 0 else -1)  # std::round: half away from zero
    if rule == "round_prefer_floor" and float(x) == math.floor(x) + 0.5:
        return int(math.floor(x))
    return rounded


def tables(n_in: int, n_out: int, scale: float, mode: str, nearest: str | None):
    """Per output index: the input index (nearest), or ([i0, i1], weight in 1/1024, float weight)."""
    if nearest is not None:
        out = []
        for v in range(n_out):
            i = nearest_pixel(source_coordinate(v, scale, n_in, n_out, mode), nearest, scale < 1)
            out.append(min(max(i, 0), n_in - 1))
        return out
    idx, w, fw = [], [], []
    for v in range(n_out):
        x = source_coordinate(v, scale, n_in, n_out, mode)
        x = F(min(max(float(x), 0.0), float(n_in - 1)))
        i0 = min(int(x), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        f = float(x - F(i0)) if i1 != i0 else 0.0
        idx.append((i0, i1))
        w.append(int(math.floor(f * 1024 + 0.5)))
        fw.append(f)
    return idx, w, fw


def _text(v, default: str) -> str:
    v = v if v is not None else default
    return v.decode() if isinstance(v, bytes) else str(v)


@onnx_op("Resize", "Upsample")
def lower_resize(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    ins = list(n.input)
    mode = _text(a.get("mode"), "nearest")
    if mode not in ("nearest", "linear"):
        raise UnsupportedError(f"{n.op_type} mode {mode!r}", where=where, fix="Use nearest or linear resizing")
    if len(xs) != 4:
        raise UnsupportedError(f"{n.op_type} of a {len(xs)}-D tensor", where=where,
                               fix="Resize the spatial axes of a 4-D NCHW tensor")
    oshape = c.shapes.get(n.output[0])
    if oshape is None or len(oshape) != 4:
        raise ModelError(f"{n.op_type} output has no static shape", where=where, fix="Export with static shapes")
    if tuple(oshape[:2]) != tuple(xs[:2]):
        raise UnsupportedError(f"{n.op_type} of the batch or channel axis ({list(xs)} -> {list(oshape)})",
                               where=where, fix="Resize height and width only")
    opset10 = n.op_type == "Upsample" or c.opset <= 10  # Upsample, Resize-10: asymmetric, simple rounding
    ctm = "asymmetric" if opset10 else _text(a.get("coordinate_transformation_mode"), "half_pixel")
    if ctm not in MODES:
        raise UnsupportedError(f"coordinate_transformation_mode {ctm!r}", where=where,
                               fix=f"Use one of {', '.join(MODES)}")
    if int(a.get("antialias", 0)) or _text(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise UnsupportedError("Resize with antialias or keep_aspect_ratio_policy", where=where)
    if "axes" in a and sorted(int(v) % 4 for v in a["axes"]) not in ([2, 3], [0, 1, 2, 3]):
        raise UnsupportedError(f"Resize over axes {list(a['axes'])}", where=where, fix="Resize height and width")
    scales = None
    k = 1 if opset10 else 2
    if "scales" in a:
        scales = np.asarray(a["scales"], np.float32)
    elif len(ins) > k and ins[k]:
        if ins[k] not in c.consts:
            raise UnsupportedError("Resize scales computed at run time", where=where, fix="Export with constant scales")
        scales = np.asarray(c.consts[ins[k]], np.float32).reshape(-1)
    if scales is not None and scales.size == 0:
        scales = None
    if scales is None:  # sizes given: ONNX Runtime's scale is output / input in float32
        scales = np.array([F(o) / F(i) for o, i in zip(oshape, xs)], np.float32)
    if scales.size == 2:
        scales = np.concatenate([np.ones(2, np.float32), scales])
    if scales.size != 4 or scales[0] != 1 or scales[1] != 1 or np.any(scales <= 0):
        raise UnsupportedError(f"{n.op_type} scales {scales.tolist()}", where=where, fix="Scale height and width only")
    nearest = None
    if mode == "nearest":
        nearest = "simple" if opset10 else _text(a.get("nearest_mode"), "round_prefer_floor")
        if nearest not in ("simple", "round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
            raise UnsupportedError(f"nearest_mode {nearest!r}", where=where)
        if ctm == "half_pixel_symmetric":  # ORT picks other pixels than its own formula gives (7 -> 4 by 0.6)
            raise UnsupportedError("nearest Resize with coordinate_transformation_mode 'half_pixel_symmetric'",
                                   where=where, fix="Use half_pixel (or linear mode)")
    x = channels_last(c, x, xs)
    o = out_tensor(c, n, oshape)
    hs, ws = (tables(xs[ax], oshape[ax], float(scales[ax]), ctm, nearest) for ax in (2, 3))
    if mode == "nearest":
        c.add_node(n.name or o, "resize", [x], [o], mode="nearest", index_h=tuple(hs), index_w=tuple(ws))
        return
    c.add_node(n.name or o, "resize", [x], [o], mode="bilinear", index_h=tuple(hs[0]), weight_h=tuple(hs[1]),
               fweight_h=tuple(hs[2]), index_w=tuple(ws[0]), weight_w=tuple(ws[1]), fweight_w=tuple(ws[2]))
