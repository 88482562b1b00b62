"""Python mirrors of the C kernels' own checks and sizes.

The generator decides at compile time which C function a layer calls (so a model links only
the code it runs), which needs the same answer the kernel would give at run time.  Each
function or constant here mirrors one C predicate or macro, named in its docstring;
``tests/test_kernel_mirrors.py`` compiles the C side into a host library and compares both on
random shapes, and debug builds of the kernels trap when they disagree.
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....ops.pool import tflite_window
from ....passes.memory_plan import MemoryPlan

DW_TILE = 5  # EC_DW_TILE (ec_kernels_dsp): output columns per tile of the depthwise 3x3 fast path
DW_SCRATCH_BYTES = 840  # 4 * EC_DWS_SCRATCH (ec_kernels_dsp): the strips' int16 row pairs (their workspace)
GEMM_ADD_TABLE_BYTES = 2048  # EC_GEMM_ADD_TABLE_BYTES: two int32 tables of 256 entries


def gemm_work_bytes(kbp: int, in_c: int, chunk: int, n_live: int | None) -> int:
    """EC_GEMM_WORK_BYTES(kbp, in_c, chunk, n_live): the matrix-product workspace of one layer
    (two pixels' windows as int16 pairs, a byte row for bordered windows when in_c % 4, the
    accumulators of ``chunk`` channel pairs, the computed channels' outputs when some are pruned)."""
    return (5 if in_c % 4 else 4) * kbp + 16 * chunk + (0 if n_live is None else -(-2 * n_live // 4) * 4)


def kernel_row_bytes(kernel_w: int, in_c: int) -> int:
    """kernel_row_bytes (ec_kernels_gemm): a kernel row's taps padded to whole words."""
    return -(-kernel_w * in_c // 4) * 4


def dw_requant_ok(g: ir.Graph, node: ir.Node, c: int) -> bool:
    """dw_requant_ok (ec_kernels_dsp): every multiplier above 2^30, every shift in [-21, -1],
    |bias| <= 2^29 (the SMMLAR requantization of 2 acc)."""
    q = node.attrs["q"]
    m = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (c,))
    sh = np.broadcast_to(np.asarray(q["shift"], np.int64), (c,))
    b = g.tensors[node.inputs[2]].data.astype(np.int64).reshape(-1) if len(node.inputs) > 2 else np.zeros(c, np.int64)
    return bool((m > 1 << 30).all() and ((sh <= -1) & (sh >= -21)).all() and (np.abs(b) <= 1 << 29).all())


def dw_fast_shape_ok(g: ir.Graph, node: ir.Node, res) -> bool:
    """dw_fast_ok's conditions but the placement: 3x3, stride 1, dilation 1, padding <= 1, at least
    2 channels, no fused residual, every requantization a right shift (the layers that get the fast
    path's workspace, kernel_plan.dw_workspaces)."""
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    w = g.tensors[node.inputs[1]]
    a, q = node.attrs, node.attrs.get("q")
    if res or q is None or len(x.shape) != 4 or tuple(w.shape[1:3]) != (3, 3):
        return False
    pt, pl = a.get("pad", (0, 0, 0, 0))[:2]
    ih, iw, c = (int(v) for v in x.shape[1:])
    oh, ow, oc = (int(v) for v in y.shape[1:])
    if tuple(a.get("stride", (1, 1))) != (1, 1) or tuple(a.get("dilation", (1, 1))) != (1, 1) or c < 2 or oc != c \
            or not (0 <= pt <= 1 and 0 <= pl <= 1 and 0 <= oh + 2 - pt - ih <= 1 and 0 <= ow + 2 - pl - iw <= 1):
        return False
    return dw_requant_ok(g, node, c)


def dw_fast_ok(g: ir.Graph, node: ir.Node, plan: MemoryPlan, res) -> bool:
    """dw_fast_ok (ec_kernels_dsp): whether the depthwise 3x3 stride-1 fast path takes this layer
    (decided here so that the general code is not linked when no layer needs it)."""
    if not dw_fast_shape_ok(g, node, res):
        return False
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    pt = node.attrs.get("pad", (0, 0, 0, 0))[0]
    n, ih, iw, c = (int(v) for v in x.shape)
    oh, ow = (int(v) for v in y.shape[1:3])
    ox, oy = plan.offsets[x.name], plan.offsets[y.name]
    if oy < ox + n * ih * iw * c and ox < oy + n * oh * ow * c:  # overlapping: only one row behind
        if not (n == 1 and iw * c == ow * c and ow <= DW_TILE and ox - oy == pt * iw * c):
            return False
    return True


def dw_s2_ok(g: ir.Graph, node: ir.Node, res) -> bool:
    """dw_s2_ok (ec_kernels_dsp): whether an int8 depthwise layer takes the 3x3 stride-2 path."""
    x, w = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
    a, q = node.attrs, node.attrs.get("q")
    if res or q is None or len(x.shape) != 4 or tuple(w.shape[1:3]) != (3, 3) or int(x.shape[3]) < 2 \
            or int(a.get("depth_multiplier", 1)) != 1:
        return False
    pt, pl = a.get("pad", (0, 0, 0, 0))[:2]
    return tuple(a.get("stride", (1, 1))) == (2, 2) and tuple(a.get("dilation", (1, 1))) == (1, 1) \
        and pt <= 1 and pl <= 1 and dw_requant_ok(g, node, int(x.shape[3]))


def gemm_fast_requant(q: dict, rq: dict | None, n: int, live=None) -> bool:
    """Whether every multiplier is in (2^30, 2^31) and every shift in [-24, -1] (ec_kernels_gemm's
    one-multiply requantization, ec_gemm_store2; the fused residual add's too)."""
    pairs = [(np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,)),
              np.broadcast_to(np.asarray(q["shift"], np.int64), (n,)))]
    if live is not None:
        pairs = [(m[live], sh[live]) for m, sh in pairs]
    if rq is not None:
        for k in ("input1", "input2", "output"):
            m, s = int(rq[f"{k}_multiplier"]), int(rq[f"{k}_shift"])
            if k != "output" and m == 1 << 30 and s == 0:
                continue  # x / 2 exactly (x is even: left_shift >= 1)
            pairs.append((np.asarray([m], np.int64), np.asarray([s], np.int64)))
        if not 1 <= int(rq["left_shift"]) <= 20:
            return False
    return all(bool(((m > 1 << 30) & (m < 1 << 31)).all() and ((s >= -24) & (s <= -1)).all()) for m, s in pairs)


def gemm_acc_ok(g: ir.Graph, node: ir.Node, live=None) -> bool:
    """Whether every accumulator of a conv2d or fully connected layer stays below 2^30 in magnitude
    with room for the output constant (the SMMLAR form of ec_gemm_store2 and of the DSP fully
    connected kernel: 2a and a + (1 + 2 zp) 2^(s-1) fit 32 bits):
    |bias| + 255 * sum|w| bounds TFLM's accumulator (inputs minus their zero point span 255)."""
    w = g.tensors[node.inputs[1]].data.astype(np.int64)
    bound = 255 * np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)
    if len(node.inputs) > 2:
        bound = bound + np.abs(g.tensors[node.inputs[2]].data.astype(np.int64).reshape(-1))
    q = node.attrs["q"]
    sh = np.broadcast_to(np.asarray(q["shift"], np.int64), bound.shape)
    if live is not None:
        bound, sh = bound[live], sh[live]
    const = (255 << np.maximum(-sh - 1, 0)).astype(np.int64)
    return bool((bound < 1 << 30).all() and (bound + const + 1 < 1 << 31).all())


def residual_run_ok(lay, fast: int, out_c: int, out_w: int) -> bool:
    """residual_run_ok (ec_kernels_gemm, checked for every call): whether every residual store of a
    layer takes ec_gemm_store_residual's run: the one-multiply path, all channels in one pass, room
    for both pixels' outputs in the windows' space, and two pixels in every pair (an even width:
    also row by row and in the row-fused calls)."""
    pairs = (out_c + 1) // 2
    return bool(fast) and lay.chunk >= pairs and (not lay.wtile or lay.wtile >= pairs) \
        and 2 * out_c <= 4 * lay.kbp and out_w % 2 == 0


# --------------------------------------------------------------------------- Helium (MVE) kernels
# ec_kernels_mve.h (templates/cortex_m/kernels/mve/): when each Helium kernel takes a layer (the
# kernel planner marks those layers, kernel_plan.mark_mve) and the arena workspace it needs.
MVE_CONV_GROUP = 3  # EC_MVE_CONV_GROUP: output channels per pass of the convolution's 2x3 block
MVE_FC_GROUP = 6  # EC_MVE_FC_GROUP: output rows per pass of the fully connected 1x6 block
MVE_DW_GROUP = 16  # EC_MVE_DW_GROUP: channels per pass of the depthwise kernel (two halves of int16 lanes)
MVE_DW_MAX_TAPS = 25  # EC_MVE_DW_MAX_TAPS: kernel_h * kernel_w of a depthwise layer (tap pointers on the stack)
MVE_AVG_MAX_WINDOW = 256  # kernel_h * kernel_w of an average pool (window sums in 16 bits)


def mve_conv_work_bytes(kernel_h: int, kernel_w: int, in_c: int, padded: bool) -> int:
    """EC_MVE_CONV_WORK_BYTES: two im2col windows, none for a 1x1 unpadded convolution."""
    return 0 if kernel_h == 1 and kernel_w == 1 and not padded else 2 * kernel_h * kernel_w * in_c


def mve_depthwise_work_bytes(in_c: int) -> int:
    """EC_MVE_DW_WORK_BYTES: one row of the input zero point."""
    return in_c


def mve_dw3x3_work_bytes(in_w: int, in_c: int) -> int:
    """EC_MVE_DW3X3_WORK_BYTES: a whole input row of the input zero point (the 3x3 fast path)."""
    return in_w * in_c


def _mve_int8_layer(g: ir.Graph, node: ir.Node) -> bool:
    """Quantized int8 in and out, not hybrid."""
    q = node.attrs.get("q")
    return (q is not None and "hybrid" not in node.attrs and bool(node.inputs)
            and g.tensors[node.outputs[0]].dtype == "int8" and g.tensors[node.inputs[0]].dtype == "int8")


def _mve_filter_ok(g: ir.Graph, node: ir.Node, rank: int) -> bool:
    """A constant int8 filter of this rank, symmetric (filter_offset 0), a constant int32 bias or none,
    no packed (int4 / codebook) weights."""
    w = g.tensors[node.inputs[1]]
    if not w.is_const or w.dtype != "int8" or len(w.shape) != rank or node.attrs.get("packed_weights") \
            or int(node.attrs["q"].get("filter_offset", 0)) != 0:
        return False
    if len(node.inputs) > 2:
        b = g.tensors[node.inputs[2]]
        return b.is_const and b.dtype == "int32"
    return True


def _nhwc(g: ir.Graph, node: ir.Node) -> bool:
    return len(g.tensors[node.inputs[0]].shape) == 4 and len(g.tensors[node.outputs[0]].shape) == 4


def mve_conv_ok(g: ir.Graph, node: ir.Node) -> bool:
    """ec_conv2d_s8_mve: an int8 conv2d (one group) with a constant symmetric filter; any kernel,
    stride, dilation, padding, batch; a fused residual add."""
    if node.op != "conv2d" or not _mve_int8_layer(g, node) or not _nhwc(g, node) or not _mve_filter_ok(g, node, 4):
        return False
    w, x = g.tensors[node.inputs[1]], g.tensors[node.inputs[0]]
    return int(node.attrs.get("groups", 1)) == 1 and w.shape[3] == x.shape[3]


def mve_depthwise_ok(g: ir.Graph, node: ir.Node) -> bool:
    """ec_depthwise_conv2d_s8_mve: int8, depth multiplier 1, at most MVE_DW_MAX_TAPS taps, a
    constant symmetric filter."""
    if node.op != "depthwise_conv2d" or not _mve_int8_layer(g, node) or not _nhwc(g, node) \
            or not _mve_filter_ok(g, node, 4):
        return False
    w, x = g.tensors[node.inputs[1]], g.tensors[node.inputs[0]]
    return (int(node.attrs.get("depth_multiplier", 1)) == 1 and w.shape[3] == x.shape[3]
            and w.shape[1] * w.shape[2] <= MVE_DW_MAX_TAPS)


def mve_dw3x3_arrays_ok(kernel_h: int, kernel_w: int, channels: int, filt: np.ndarray, shift, residual) -> bool:
    """ec_depthwise_conv2d_s8_mve3x3 (the fast path of a Helium depthwise layer): 3x3, channels a
    multiple of 16, no left shift (every shift <= 0), no fused residual add, no -128 in the filter
    (two int8 products then add up in int16 without wrapping)."""
    return (kernel_h == 3 and kernel_w == 3 and channels % MVE_DW_GROUP == 0 and residual is None
            and int(np.max(np.asarray(shift))) <= 0 and int(np.min(np.asarray(filt))) > -128)


def mve_dw3x3_ok(g: ir.Graph, node: ir.Node) -> bool:
    """:func:`mve_dw3x3_arrays_ok` for a depthwise layer a Helium kernel runs."""
    if not node.attrs.get("mve") or node.op != "depthwise_conv2d":
        return False
    w = g.tensors[node.inputs[1]]
    return mve_dw3x3_arrays_ok(w.shape[1], w.shape[2], w.shape[3], w.data, node.attrs["q"]["shift"],
                               node.attrs.get("residual"))


def mve_fc_ok(g: ir.Graph, node: ir.Node) -> bool:
    """ec_fully_connected_s8_mve: int8 with a constant symmetric filter, no fused residual add."""
    return (node.op == "fully_connected" and _mve_int8_layer(g, node) and _mve_filter_ok(g, node, 2)
            and not node.attrs.get("residual"))


def mve_pool_ok(g: ir.Graph, node: ir.Node) -> bool:
    """ec_max_pool2d_s8_mve (any window) / ec_avg_pool2d_s8_mve (kernel_h * kernel_w <= 256): int8,
    TFLite's window (no dilation, padding not counted)."""
    if node.op not in ("max_pool2d", "avg_pool2d") or not _nhwc(g, node) or not tflite_window(node.attrs):
        return False
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    if x.dtype != "int8" or y.dtype != "int8" or x.shape[3] != y.shape[3]:
        return False
    kh, kw = node.attrs.get("kernel", (1, 1))
    return node.op == "max_pool2d" or kh * kw <= MVE_AVG_MAX_WINDOW


def mve_add_ok(g: ir.Graph, node: ir.Node) -> bool:
    """ec_add_s8_mve: an int8 add of two tensors of the same shape (no broadcasting)."""
    if node.op != "add" or len(node.inputs) != 2 or node.attrs.get("q") is None:
        return False
    a, b, y = (g.tensors[t] for t in (*node.inputs, node.outputs[0]))
    return a.dtype == b.dtype == y.dtype == "int8" and a.shape == b.shape == y.shape


MVE_CHECKS = {"conv2d": mve_conv_ok, "depthwise_conv2d": mve_depthwise_ok, "fully_connected": mve_fc_ok,
              "max_pool2d": mve_pool_ok, "avg_pool2d": mve_pool_ok, "add": mve_add_ok}


def mve_ok(g: ir.Graph, node: ir.Node) -> bool:
    """Whether a Helium kernel runs this layer (on a core with MVE)."""
    check = MVE_CHECKS.get(node.op)
    return check is not None and check(g, node)


def mve_work_bytes(g: ir.Graph, node: ir.Node) -> int:
    """The arena workspace of the layer's Helium kernel (0: none)."""
    if node.op == "conv2d":
        _, kh, kw, ic = g.tensors[node.inputs[1]].shape
        return mve_conv_work_bytes(kh, kw, ic, any(node.attrs.get("pad", (0, 0, 0, 0))))
    if node.op == "depthwise_conv2d":
        x = g.tensors[node.inputs[0]]
        return mve_dw3x3_work_bytes(x.shape[2], x.shape[3]) if mve_dw3x3_ok(g, node) else \
            mve_depthwise_work_bytes(x.shape[3])
    return 0
