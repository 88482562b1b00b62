"""Kernel windows of an NHWC tensor as a strided view (im2col without the copy), shared by the
int8 / float interpreter (``interp``) and the int16 one (``interp_s16``)."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def windows(x: np.ndarray, k: tuple, stride: tuple, dilation: tuple, out_hw: tuple) -> np.ndarray:
    """(N,Hp,Wp,C) padded input -> view (N,OH,OW,C,KH,KW)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = k, stride, dilation, out_hw
    v = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    return v[:, ::sh, ::sw, :, ::dh, ::dw][:, :oh, :ow]


def pad(x: np.ndarray, pad, value) -> np.ndarray:
    """Pad H and W of an NHWC tensor by pad = (top, left, bottom, right) with ``value``."""
    t, left, b, r = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=value)


def conv_acc(x: np.ndarray, w: np.ndarray, op: str, attrs: dict, out_hw: tuple) -> np.ndarray:
    """Per output pixel and channel, the sum of x * w over the kernel window (float64, exact for
    integers while partial sums stay below 2^53); padded taps read 0.

    ``op``: "conv2d" (w [O,KH,KW,I]) or "depthwise_conv2d" (w [1,KH,KW,C*M], attrs
    depth_multiplier M); attrs: pad, stride, dilation (default 1)."""
    n = x.shape[0]
    oh, ow = out_hw
    cols = windows(pad(x, attrs["pad"], 0.0), (w.shape[1], w.shape[2]), attrs["stride"],
                   attrs.get("dilation", (1, 1)), (oh, ow))
    if op == "conv2d":
        cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)
        return (cols @ w.reshape(w.shape[0], -1).T).reshape(n, oh, ow, w.shape[0])
    m = int(attrs.get("depth_multiplier", 1))
    if m != 1:
        cols = np.repeat(cols, m, axis=3)
    return np.einsum("nhwckl,klc->nhwc", cols, w[0], optimize=True)
