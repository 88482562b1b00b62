"""int16 ("16x8") semantics of the reference interpreter: ``ec_kernels_s16.c`` in numpy.

Each kernel function here computes what the C function of the same name computes, to the bit
(docs/internals.md, "int16 activations"): int16 activations with zero point 0, int8 symmetric
weights, int32 biases, int64 accumulators; requantization rounds half to even through the split
multiply of ``ec_requantize_acc_s16`` (or ``ec_shift_acc_s16`` for shift-only layers); the add
rounds once; the average pool keeps 16 fraction bits of the mean; float -> int16 rounds half to
even in float32; int16 -> float multiplies in float32.

:func:`run_node` runs every node that reads or writes a non-constant int16 tensor (``interp``
dispatches on :func:`is_s16`).  Whatever the C backend does not run in int16 (softmax, a fused
residual add, a zero point, int8 tensors among int16 ones, ...) is refused with
:class:`UnsupportedError` rather than computed some other way.  Parameters are
``node.attrs["q"]`` or ``passes.requantize.node_q``: the set the C emitter writes.
"""
from __future__ import annotations

import numpy as np

from . import ir
from .errors import ModelError, UnsupportedError
from .im2col import conv_acc, pad, windows
from .int16 import INT16_MAX, INT16_MIN, POW2_MULTIPLIER, is_s16  # noqa: F401  (is_s16: interp dispatches on it)
from .int16 import act_range as _act
from .int16 import check_tensors as _check_s16
from .ops.pool import tflite_window
from .passes.requantize import node_q

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACC_LIMIT = 1 << 47  # EC_S16_ACC_LIMIT: beyond it every requantized value saturates int16
MAX_SHIFT = 30  # the kernels shift right by 31 - shift >= 1 (quantize_multiplier's shifts are <= 30)
OPS = ("conv2d", "depthwise_conv2d", "fully_connected", "max_pool2d", "avg_pool2d", "add", "clamp", "quantize",
       "dequantize", "reshape", "concat", "transpose")


def _i64(v) -> np.ndarray:
    return np.asarray(v, dtype=np.int64)


# --------------------------------------------------------------------------- requantization
def _split_floor(hi, lo, m, add, n):
    """floor(((hi * 2^16 + lo) * m + add) / 2^n) for n >= 16, 0 <= lo < 2^16: the C's split_floor
    (the 64 x 32-bit product is never formed; every term fits int64)."""
    return (hi * m + ((lo * m + add) >> 16)) >> (n - 16)


def ec_requantize_acc_s16(acc, multiplier, shift) -> np.ndarray:
    """acc * multiplier * 2^(shift - 31) rounded to nearest, ties to even, saturated to int32
    (elementwise; arguments broadcast; shift <= 30)."""
    acc, m, s = np.broadcast_arrays(_i64(acc), _i64(multiplier), _i64(shift))
    n = 31 - s
    nb = np.clip(n, 16, 62)  # n >= 16: split multiply of acc clamped to +-2^47
    big = np.clip(acc, -ACC_LIMIT, ACC_LIMIT)
    hi, lo = big >> 16, big & 0xFFFF
    odd = _split_floor(hi, lo, m, 0, nb) & 1
    y_big = _split_floor(hi, lo, m, (np.int64(1) << (nb - 1)) - 1 + odd, nb)
    ns = np.clip(n, 1, 15)  # n < 16: acc clamped to int32, multiplied directly
    x = np.clip(acc, INT32_MIN, INT32_MAX) * m
    y_small = (x + (np.int64(1) << (ns - 1)) - 1 + ((x >> ns) & 1)) >> ns
    y = np.where(n > 62, 0, np.where(n >= 16, y_big, y_small))
    return np.clip(y, INT32_MIN, INT32_MAX)


def ec_shift_acc_s16(acc, shift) -> np.ndarray:
    """The same for multiplier 2^30: acc * 2^(shift - 1), rounded half to even, saturated to int32."""
    acc, s = np.broadcast_arrays(_i64(acc), _i64(shift))
    k = 1 - s  # right shift
    kr = np.clip(k, 1, 62)
    big = np.clip(acc, -ACC_LIMIT, ACC_LIMIT)
    y_right = (big + (np.int64(1) << (kr - 1)) - 1 + ((big >> kr) & 1)) >> kr
    y_left = np.clip(acc, INT32_MIN, INT32_MAX) << np.clip(-k, 0, 31)
    y = np.where(k > 62, 0, np.where(k > 0, y_right, y_left))
    return np.clip(y, INT32_MIN, INT32_MAX)


def _requantize_or_shift(acc, multiplier: int, shift: int) -> np.ndarray:
    """One (multiplier, shift) pair; multiplier 0 means shift only (add, average pool, requantize)."""
    if int(multiplier) != 0:
        return ec_requantize_acc_s16(acc, multiplier, shift)
    return ec_shift_acc_s16(acc, shift)


def _requantize_channels(acc: np.ndarray, q: dict) -> np.ndarray:
    """A weighted layer's per-channel requantization (last axis); shift only when every multiplier
    is 2^30 (the C gets ``multiplier = NULL``)."""
    c = acc.shape[-1]
    m = np.broadcast_to(_i64(q["multiplier"]), (c,))
    s = np.broadcast_to(_i64(q["shift"]), (c,))
    if np.all(m == POW2_MULTIPLIER):
        return ec_shift_acc_s16(acc, s)
    return ec_requantize_acc_s16(acc, m, s)


def _clamp(v: np.ndarray, act: tuple[int, int]) -> np.ndarray:
    lo, hi = act
    return np.clip(v, lo, hi).astype(np.int16)


# --------------------------------------------------------------------------- kernels
def ec_conv2d_s16(x: np.ndarray, w: np.ndarray, bias, q: dict, attrs: dict, out_hw: tuple,
                  act: tuple[int, int], op: str = "conv2d") -> np.ndarray:
    """conv2d (or, with op="depthwise_conv2d", ec_depthwise_conv2d_s16): int64 sums over the
    clipped window, bias first, then per-channel requantization and the act clamp."""
    acc = np.rint(conv_acc(x.astype(np.float64), w.astype(np.float64), op, attrs, out_hw)).astype(np.int64)
    if bias is not None:
        acc = acc + _i64(bias)
    return _clamp(_requantize_channels(acc, q), act)


def ec_fully_connected_s16(x: np.ndarray, w: np.ndarray, bias, q: dict, act: tuple[int, int]) -> np.ndarray:
    """Rows of w.shape[1] inputs -> [rows, w.shape[0]] outputs."""
    rows = x.reshape(-1, w.shape[1]).astype(np.float64)
    acc = np.rint(rows @ w.astype(np.float64).T).astype(np.int64)  # exact: partial sums < 2^53
    if bias is not None:
        acc = acc + _i64(bias)
    return _clamp(_requantize_channels(acc, q), act)


def _pool_windows(x: np.ndarray, attrs: dict, out_hw: tuple, fill) -> np.ndarray:
    return windows(pad(x, attrs.get("pad", (0, 0, 0, 0)), fill), tuple(attrs["kernel"]),
                   tuple(attrs.get("stride", (1, 1))), (1, 1), out_hw)


def ec_max_pool2d_s16(x: np.ndarray, attrs: dict, out_hw: tuple, act: tuple[int, int]) -> np.ndarray:
    """The maximum over the window clipped to the input (INT16_MIN if empty), then the act clamp."""
    return _clamp(_pool_windows(x, attrs, out_hw, INT16_MIN).max(axis=(4, 5)), act)


def ec_avg_pool2d_s16(x: np.ndarray, attrs: dict, out_hw: tuple, multiplier: int, shift: int,
                      act: tuple[int, int]) -> np.ndarray:
    """The mean over the clipped window as sum * 2^16 / count (half away from zero, C division),
    requantized by (multiplier, shift - 16), clamped."""
    total = _pool_windows(x.astype(np.int64), attrs, out_hw, 0).sum(axis=(4, 5))
    ones = np.ones((1,) + x.shape[1:3] + (1,), np.int64)
    count = _pool_windows(ones, attrs, out_hw, 0).sum(axis=(4, 5))
    num = total * 65536 + np.where(total >= 0, count // 2, -(count // 2))
    avg = np.where(count > 0, np.sign(num) * (np.abs(num) // np.maximum(count, 1)), 0)  # truncates toward 0
    return _clamp(_requantize_or_shift(avg, multiplier, shift - 16), act)


def ec_add_s16(a: np.ndarray, b: np.ndarray, q: dict, act: tuple[int, int]) -> np.ndarray:
    """y = requantize(a * a_multiplier + b * b_multiplier) (one rounding), clamped."""
    acc = _i64(a) * int(q["a_multiplier"]) + _i64(b) * int(q["b_multiplier"])
    return _clamp(_requantize_or_shift(acc, q["output_multiplier"], q["output_shift"]), act)


def ec_clamp_s16(x: np.ndarray, act: tuple[int, int]) -> np.ndarray:
    return _clamp(x, act)


def ec_requantize_s16(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """int16 -> int16 with another scale (multiplier 0: shift only), saturated."""
    return _clamp(_requantize_or_shift(x, multiplier, shift), (INT16_MIN, INT16_MAX))


def ec_quantize_f32_s16(x: np.ndarray, scale) -> np.ndarray:
    """x / scale in float32, rounded half to even, saturated; NaN gives 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = np.rint(np.asarray(x, np.float32) / np.float32(scale))
    return np.where(np.isnan(v), 0, np.clip(v, INT16_MIN, INT16_MAX)).astype(np.int16)


def ec_dequantize_s16_f32(x: np.ndarray, scale) -> np.ndarray:
    """(float)q * scale in float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(np.float32) * np.float32(scale)


# --------------------------------------------------------------------------- graph nodes
def _refuse(node: ir.Node, what: str, fix: str | None = None) -> UnsupportedError:
    return UnsupportedError(f"{what} in the reference interpreter", where=f"node {node.name!r}",
                            fix=fix or "Quantize the model with int16 activations throughout (--precision int16)")


def _q(graph: ir.Graph, node: ir.Node) -> dict:
    q = node.attrs.get("q") or node_q(graph, node)
    if q is None:
        raise ModelError("int16 node without requantization parameters", where=f"node {node.name!r}")
    return q


def _check_shifts(node: ir.Node, shift, lo: int = -(1 << 31)) -> None:
    s = _i64(shift)
    if s.size and (s.max() > MAX_SHIFT or s.min() < lo):
        raise _refuse(node, f"requantization shift out of range ({int(s.min())}..{int(s.max())})",
                      "Check the model's quantization scales")


def _weights(graph: ir.Graph, node: ir.Node) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(int8 filter, int32 bias or None, q) of a weighted int16 layer, refused unless symmetric."""
    w = graph.tensors[node.inputs[1]]
    b = graph.tensors[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    if not w.is_const or w.dtype != "int8" or (b is not None and (not b.is_const or b.dtype != "int32")):
        raise _refuse(node, "int16 layer without constant int8 weights and int32 bias",
                      "Quantize weights to int8 (per-channel symmetric) with int32 biases")
    q = _q(graph, node)
    if q.get("input_offset", 0) or q.get("output_offset", 0) or q.get("filter_offset", 0):
        raise _refuse(node, "int16 layer with a zero point", "Quantize int16 activations and int8 weights symmetrically")
    _check_shifts(node, q["shift"], lo=-128)  # the C stores the shifts as int8_t
    return w.data, (None if b is None else b.data), q


def _check_shapes(node: ir.Node, x: ir.Tensor, w: np.ndarray, out: ir.Tensor) -> None:
    if node.op == "fully_connected":
        ok = len(w.shape) == 2 and x.size % w.shape[1] == 0 and out.size == (x.size // w.shape[1]) * w.shape[0]
    else:
        dw = node.op == "depthwise_conv2d"
        ok = len(x.shape) == len(out.shape) == len(w.shape) == 4 and w.shape[3 if dw else 0] == out.shape[3] and (
            w.shape[3] == x.shape[3] * int(node.attrs.get("depth_multiplier", 1)) if dw else w.shape[3] == x.shape[3])
    if not ok:
        raise ModelError(f"weights {list(w.shape)} do not match input {list(x.shape)} and output {list(out.shape)}",
                         where=f"node {node.name!r}")


def run_node(graph: ir.Graph, node: ir.Node, env: dict[str, np.ndarray]) -> np.ndarray:
    """The int16 node's output for the samples in ``env`` (arrays [N, ...])."""
    op = node.op
    out = graph.tensors[node.outputs[0]]
    x_t = graph.tensors[node.inputs[0]] if node.inputs else None
    x = env[node.inputs[0]] if node.inputs else None
    if op not in OPS:
        raise _refuse(node, f"int16 {op}", "Only conv2d, depthwise_conv2d, fully_connected, max/avg pools, add, "
                                           "concat, reshape, clamp, quantize and dequantize run in int16; the "
                                           "frontend keeps other ops in float")
    if node.attrs.get("residual"):
        raise _refuse(node, f"residual add fused into an int16 {op}", "Keep int16 adds as add nodes")
    hw = tuple(out.shape[1:3])
    if int(node.attrs.get("groups", 1)) != 1:
        raise _refuse(node, "int16 grouped convolution", "Keep the layer in int8 or float")
    if op in ("max_pool2d", "avg_pool2d") and not tflite_window(node.attrs):
        raise _refuse(node, f"int16 {op} with dilation or count_include_pad", "Keep the pool in int8 or float")
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        _check_s16(node, x_t, out)
        w, b, q = _weights(graph, node)
        _check_shapes(node, x_t, w, out)
        if op == "fully_connected":
            return ec_fully_connected_s16(x, w, b, q, _act(node))
        return ec_conv2d_s16(x, w, b, q, node.attrs, hw, _act(node), op)
    if op == "max_pool2d":
        _check_s16(node, x_t, out)
        if not np.array_equal(x_t.quant.scale, out.quant.scale):
            raise _refuse(node, "int16 max pool whose output quantization differs from its input's",
                          "Requantize after the pool")
        return ec_max_pool2d_s16(x, node.attrs, hw, _act(node))
    if op == "avg_pool2d":
        _check_s16(node, x_t, out)
        q = _q(graph, node)
        _check_shifts(node, q["shift"])
        return ec_avg_pool2d_s16(x, node.attrs, hw, q["multiplier"], q["shift"], _act(node))
    if op == "add":
        b_t = graph.tensors[node.inputs[1]]
        _check_s16(node, x_t, b_t, out)
        if b_t.shape != x_t.shape or x_t.size != out.size:
            raise _refuse(node, "int16 add with broadcasting", "Give both inputs the same shape")
        q = _q(graph, node)
        _check_shifts(node, q["output_shift"])
        return ec_add_s16(x, env[node.inputs[1]], q, _act(node))
    if op == "clamp":
        _check_s16(node, x_t, out)
        return ec_clamp_s16(x, _act(node))
    if op == "quantize" and x_t.dtype == "float32":
        _check_s16(node, out)
        return ec_quantize_f32_s16(x, out.quant.scale[0])
    if op == "quantize":
        _check_s16(node, x_t, out)
        q = _q(graph, node)
        _check_shifts(node, q["shift"])
        return ec_requantize_s16(x, q["multiplier"], q["shift"])
    if op == "dequantize":
        _check_s16(node, x_t)
        if out.dtype != "float32":
            raise _refuse(node, f"dequantize int16 -> {out.dtype}")
        return ec_dequantize_s16_f32(x, x_t.quant.scale[0])
    if op == "reshape":
        return x.reshape((x.shape[0],) + tuple(node.attrs.get("shape", out.shape))[1:])
    if op == "transpose":  # moves values, whatever the scale (in and out share it)
        return np.ascontiguousarray(np.transpose(x, tuple(int(p) for p in node.attrs["perm"])))
    # concat moves bytes, whatever the scales (the frontend requantizes inputs to the output's)
    parts = [graph.tensors[i] for i in node.inputs]
    if any(t.is_const or t.dtype != out.dtype for t in parts):
        raise _refuse(node, "int16 concat of constants or of other types")
    return np.concatenate([env[i] for i in node.inputs], axis=int(node.attrs["axis"]))
