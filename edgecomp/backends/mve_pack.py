"""Helium (MVE) kernels: their packed filter layouts and when each one applies.

The kernels are ``templates/cortex_m/kernels/mve/ec_kernels_mve.{h,c}`` (Cortex-M55 and other
Armv8.1-M cores with MVE).  They are tested standalone (``tests/test_kernels_mve.py``) and not
yet chosen by the code generator: this module holds what a kernel catalogue needs to register
them -- ``applies_*(graph, node, target)``, the workspace bytes and the compile-time packing,
the Python side of the layouts ``ec_kernels_mve.h`` documents.

Every packed filter folds the input offset into the bias (``bias + input_offset * sum(w)``,
int32 wrap-around like the C accumulators, so the sums are the reference kernels' sums) and
carries the per-channel requantization as four int32 vectors: bias, multiplier, left shift
(``max(shift, 0)``) and right shift (``min(shift, 0)``, the VRSHL amount).
"""
from __future__ import annotations

import numpy as np

from .. import ir

CONV_GROUP = 3  # output channels per pass of the convolution's 2x3 block
FC_GROUP = 6  # output rows per pass of the fully connected 1x6 block
DW_GROUP = 16  # channels per pass of the depthwise kernel (two halves of int16 lanes)
DW_MAX_TAPS = 25  # kernel_h * kernel_w of a depthwise layer (the tap pointer arrays on the stack)
AVG_MAX_WINDOW = 256  # kernel_h * kernel_w of an average pool (window sums in 16 bits)


def chunks(k: int) -> int:
    return -(-k // 16)


def _per_channel(v, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1), (n,))


def fold_bias(w2d: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray:
    """bias + input_offset * sum(w) per output row, wrapped to int32 like the kernels' sums."""
    acc = np.asarray(w2d, np.int64).sum(axis=1) * int(input_offset)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64).reshape(-1)
    return ((acc + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _requant_rows(folded: np.ndarray, multiplier, shift, n: int) -> np.ndarray:
    """[4, n] int32: bias, multiplier, left shift, right shift."""
    m = _per_channel(multiplier, n)
    s = _per_channel(shift, n)
    return np.stack([folded.astype(np.int64), m, np.maximum(s, 0), np.minimum(s, 0)]).astype(np.int32)


def pack_conv(w: np.ndarray, bias: np.ndarray | None, input_offset: int, multiplier, shift) -> np.ndarray:
    """conv2d filter [O, KH, KW, I] for ec_conv2d_s8_mve: groups of 3 channels, each a 64-byte header
    (bias, multiplier, left, right: int32 x 4) and per 16-tap chunk 16 weights of each channel."""
    o = w.shape[0]
    w2 = np.asarray(w, np.int8).reshape(o, -1)
    k = w2.shape[1]
    rq = _requant_rows(fold_bias(w2, bias, input_offset), multiplier, shift, o)
    groups = -(-o // CONV_GROUP)
    kp = 16 * chunks(k)
    out = []
    for g in range(groups):
        head = np.zeros((4, 4), np.int32)
        rows = np.zeros((CONV_GROUP, kp), np.int8)
        n = min(CONV_GROUP, o - g * CONV_GROUP)
        head[:, :n] = rq[:, g * CONV_GROUP:g * CONV_GROUP + n]
        rows[:n, :k] = w2[g * CONV_GROUP:g * CONV_GROUP + n]
        body = rows.reshape(CONV_GROUP, -1, 16).transpose(1, 0, 2)  # [chunk][channel][16]
        out += [head.view(np.int8).reshape(-1), body.reshape(-1)]
    return np.concatenate(out)


def pack_fc(w: np.ndarray, bias: np.ndarray | None, input_offset: int, multiplier, shift) -> np.ndarray:
    """fully connected filter [O, I] for ec_fully_connected_s8_mve: groups of 6 rows, each a 128-byte
    header (bias, multiplier, left, right: int32 x 8) and per 16-input chunk 16 weights of each row."""
    w2 = np.asarray(w, np.int8)
    o, k = w2.shape
    rq = _requant_rows(fold_bias(w2, bias, input_offset), multiplier, shift, o)
    kp = 16 * chunks(k)
    out = []
    for g in range(-(-o // FC_GROUP)):
        n = min(FC_GROUP, o - g * FC_GROUP)
        head = np.zeros((4, 8), np.int32)
        head[:, :n] = rq[:, g * FC_GROUP:g * FC_GROUP + n]
        rows = np.zeros((FC_GROUP, kp), np.int8)
        rows[:n, :k] = w2[g * FC_GROUP:g * FC_GROUP + n]
        out += [head.view(np.int8).reshape(-1), rows.reshape(FC_GROUP, -1, 16).transpose(1, 0, 2).reshape(-1)]
    return np.concatenate(out)


def pack_depthwise(w: np.ndarray, bias: np.ndarray | None, input_offset: int, multiplier, shift) -> np.ndarray:
    """depthwise filter [1, KH, KW, C] (depth multiplier 1) for ec_depthwise_conv2d_s8_mve: groups of 16
    channels, each a 256-byte header (bias, multiplier, left, right: int32 x 16, in the lane order of
    VMULLB / VMULLT on each half: channels 0 2 4 6 | 1 3 5 7 | 8 10 12 14 | 9 11 13 15) and per tap the
    group's 16 weights."""
    taps = w.shape[1] * w.shape[2]
    c = w.shape[3]
    wt = np.asarray(w, np.int8).reshape(taps, c)
    rq = _requant_rows(fold_bias(wt.T, bias, input_offset), multiplier, shift, c)
    order = [0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15]
    out = []
    for g in range(-(-c // DW_GROUP)):
        n = min(DW_GROUP, c - g * DW_GROUP)
        lanes = np.zeros((4, DW_GROUP), np.int32)
        lanes[:, :n] = rq[:, g * DW_GROUP:g * DW_GROUP + n]
        blk = np.zeros((taps, DW_GROUP), np.int8)
        blk[:, :n] = wt[:, g * DW_GROUP:g * DW_GROUP + n]
        out += [np.ascontiguousarray(lanes[:, order]).view(np.int8).reshape(-1), blk.reshape(-1)]
    return np.concatenate(out)


# --------------------------------------------------------------------------- workspaces
def conv_work_bytes(kernel_h: int, kernel_w: int, in_c: int, padded: bool) -> int:
    """EC_MVE_CONV_WORK_BYTES: two im2col windows, none for a 1x1 unpadded convolution."""
    return 0 if kernel_h == 1 and kernel_w == 1 and not padded else 2 * kernel_h * kernel_w * in_c


def depthwise_work_bytes(in_c: int) -> int:
    """EC_MVE_DW_WORK_BYTES: one row of the input zero point."""
    return in_c


# --------------------------------------------------------------------------- when they apply
def target_has_mve(target) -> bool:
    """Armv8.1-M mainline cores (Cortex-M55, M85) have MVE with these compiler flags."""
    return getattr(target, "arch", "") == "armv8.1-m.main" and "+nomve" not in " ".join(target.cpu_flags)


def _int8_quantized(graph: ir.Graph, node: ir.Node) -> bool:
    q = node.attrs.get("q")
    return (q is not None and graph.tensors[node.outputs[0]].dtype == "int8"
            and graph.tensors[node.inputs[0]].dtype == "int8" and "hybrid" not in node.attrs)


def applies_conv(graph: ir.Graph, node: ir.Node, target) -> bool:
    """ec_conv2d_s8_mve: an int8 conv2d with a constant filter and filter_offset 0 (any kernel, stride,
    dilation, padding, batch, fused residual add) on an MVE core."""
    if node.op != "conv2d" or not target_has_mve(target) or not _int8_quantized(graph, node):
        return False
    w = graph.tensors[node.inputs[1]]
    return w.is_const and int(node.attrs["q"].get("filter_offset", 0)) == 0


def applies_depthwise(graph: ir.Graph, node: ir.Node, target) -> bool:
    """ec_depthwise_conv2d_s8_mve: int8, depth multiplier 1, at most 25 taps, filter_offset 0."""
    if node.op != "depthwise_conv2d" or not target_has_mve(target) or not _int8_quantized(graph, node):
        return False
    w = graph.tensors[node.inputs[1]]
    return (w.is_const and int(node.attrs.get("depth_multiplier", 1)) == 1
            and w.shape[1] * w.shape[2] <= DW_MAX_TAPS and int(node.attrs["q"].get("filter_offset", 0)) == 0)


def applies_fc(graph: ir.Graph, node: ir.Node, target) -> bool:
    """ec_fully_connected_s8_mve: int8 with a constant filter, filter_offset 0."""
    if node.op != "fully_connected" or not target_has_mve(target) or not _int8_quantized(graph, node):
        return False
    return graph.tensors[node.inputs[1]].is_const and int(node.attrs["q"].get("filter_offset", 0)) == 0


def applies_pool(graph: ir.Graph, node: ir.Node, target) -> bool:
    """ec_max_pool2d_s8_mve (any window) / ec_avg_pool2d_s8_mve (kernel_h * kernel_w <= 256): int8."""
    if node.op not in ("max_pool2d", "avg_pool2d") or not target_has_mve(target):
        return False
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if x.dtype != "int8" or y.dtype != "int8":
        return False
    kh, kw = node.attrs.get("kernel", (1, 1))
    return node.op == "max_pool2d" or kh * kw <= AVG_MAX_WINDOW


def applies_add(graph: ir.Graph, node: ir.Node, target) -> bool:
    """ec_add_s8_mve: an int8 add of two tensors of the same shape (no broadcasting)."""
    if node.op != "add" or not target_has_mve(target) or len(node.inputs) != 2:
        return False
    a, b, y = (graph.tensors[t] for t in (*node.inputs, node.outputs[0]))
    return a.dtype == b.dtype == y.dtype == "int8" and a.shape == b.shape == y.shape
