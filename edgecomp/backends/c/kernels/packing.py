"""Weight packers: the constant layouts the optimized kernels read, computed at compile time.

Each packer names the kernel that reads its output.  Packing never changes a value, only
where it sits (and, for the folded bias, adds the input offset's share exactly as the kernel's
int32 arithmetic would).
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....numerics import multiply_by_quantized_multiplier
from .predicates import MVE_CONV_GROUP, MVE_DW_GROUP, MVE_FC_GROUP


def folded_bias(g: ir.Graph, node: ir.Node, input_offset: int, n_out: int) -> np.ndarray | None:
    """bias + input_offset * sum(w) per output channel, wrapped to int32 as the kernel's sums wrap
    (ec_kernels_dsp / ec_kernels_gemm: interior pixels then multiply raw int8 inputs); None when
    the bias is not a constant int32 tensor."""
    w = g.tensors[node.inputs[1]].data.astype(np.int64)
    wsum = w.reshape(w.shape[0], -1).sum(axis=1)
    if len(node.inputs) > 2:
        b = g.tensors[node.inputs[2]]
        if not b.is_const or b.dtype != "int32":
            return None
        bias = b.data.astype(np.int64).reshape(-1)
    else:
        bias = np.zeros(n_out, np.int64)
    folded = bias + int(input_offset) * wsum
    return ((folded + (1 << 31)) % (1 << 32)) - (1 << 31)


def pack_gemm_weights(w: np.ndarray, nb: int, kbp: int) -> np.ndarray:
    """OHWI int8 weights -> ec_conv2d_s8_gemm's layout [pair][block][4-tap chunk][row of the pair]
    [4 taps], each kernel row's kernel_w * in_c taps zero padded to whole words (``nb`` blocks of
    ``kbp`` taps)."""
    oc, kh = w.shape[0], w.shape[1]
    seg = w.shape[2] * w.shape[3]
    rows = np.zeros((oc, kh, -(-seg // 4) * 4), np.int8)
    rows[:, :, :seg] = w.reshape(oc, kh, seg)
    pairs = (oc + 1) // 2
    a = np.zeros((2 * pairs, nb, kbp), np.int8)
    a[:oc] = rows.reshape(oc, nb, kbp)
    a = a.reshape(pairs, 2, nb, kbp // 4, 4).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(a).reshape(-1)


def widen_gemm_weights(packed: np.ndarray) -> np.ndarray:
    """pack_gemm_weights' bytes as ec_gemm16_2x2 reads them (the kernel's widen() at compile time):
    per 8 bytes (row 0's 4 taps, row 1's), int16 taps (0, 2), (1, 3) of row 0, then of row 1."""
    a = packed.astype(np.int16).reshape(-1, 2, 4)
    return np.ascontiguousarray(a[:, :, [0, 2, 1, 3]]).reshape(-1)


def quad_gemm_weights(wide: np.ndarray, kbp: int, chunk: int) -> np.ndarray:
    """widen_gemm_weights' int16 taps (one block of ``kbp`` taps per channel pair) as ec_gemm16_2x4
    reads them: the pairs in calls of ``chunk`` (the layer's pairs per pass), each call's pairs in
    quads of four channels (per 4 taps: the four channels' taps (0, 2), then their taps (1, 3)) and
    an odd last pair as it was."""
    k4 = kbp // 4
    pairs = wide.size // (2 * kbp)
    a = wide.reshape(pairs, k4, 2, 2, 2)  # pair, 4-tap chunk, channel of the pair, taps (0, 2) / (1, 3), int16
    out = []
    for j0 in range(0, pairs, chunk):
        n = min(chunk, pairs - j0)
        quads = a[j0: j0 + n - n % 2].reshape(n // 2, 2, k4, 2, 2, 2)  # quad, pair, chunk, channel, e/o, int16
        out.append(quads.transpose(0, 2, 4, 1, 3, 5).reshape(-1))  # quad, chunk, e/o, pair, channel, int16
        out.append(a[j0 + n - n % 2: j0 + n].reshape(-1))
    return np.ascontiguousarray(np.concatenate(out))


def store_constants(q: dict, n: int, live=None) -> np.ndarray:
    """ec_gemm_store2k's table: per computed channel M, s = -shift, (1 + 2 zp) << (s - 1) as int32
    (the one-multiply path: s in [1, 24])."""
    m = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,))
    s = -np.broadcast_to(np.asarray(q["shift"], np.int64), (n,))
    if live is not None:
        m, s = m[live], s[live]
    k = ((1 + 2 * int(q["output_offset"])) << (s - 1)) & 0xFFFFFFFF
    k = np.where(k >= 1 << 31, k - (1 << 32), k)
    return np.stack([m, s, k], axis=1).reshape(-1)


def fused_store_table(rq: np.ndarray, bias2) -> np.ndarray:
    """ec_gemm16_2x4_rq's table: per quad of channels their four doubled folded biases (where the
    accumulators start), then store_constants' M, s, k of each; four zero words after the last
    quad (the kernel reads a next quad's bias ahead)."""
    b = np.asarray(bias2, np.int64).reshape(-1, 4)
    t = np.concatenate([b, np.asarray(rq, np.int64).reshape(-1, 12)], axis=1).reshape(-1)
    return np.concatenate([t, np.zeros(4, np.int64)])


def pack_fc_weights(w: np.ndarray, wide: bool = False) -> np.ndarray:
    """(out, in) int8 -> ec_fully_connected_s8_dsp's layout: rows in quads (zero rows to a multiple
    of 4), inputs in groups of 4 (the last zero padded), per group the quad's 4 rows of 4 weights;
    ``wide``: each row's 4 weights as int16 taps (0, 2, 1, 3) (ec_fully_connected_s8_dsp16)."""
    o, n = w.shape
    a = np.zeros((-(-o // 4) * 4, -(-n // 4) * 4), np.int16 if wide else np.int8)
    a[:o, :n] = w
    a = a.reshape(-1, 4, a.shape[1] // 4, 4).transpose(0, 2, 1, 3)
    if wide:
        a = a[..., [0, 2, 1, 3]]
    return np.ascontiguousarray(a).reshape(-1)


def dead_channel_row(g: ir.Graph, node: ir.Node, live: np.ndarray) -> np.ndarray:
    """One output pixel of a conv with its zero-weight channels' values (TFLM: the accumulator is
    the bias; requantized, plus the zero point, clamped); 0 at the computed channels ``live``."""
    out = g.tensors[node.outputs[0]]
    n = out.shape[3]
    q = node.attrs["q"]
    b = g.tensors[node.inputs[2]].data.astype(np.int64).reshape(-1) if len(node.inputs) > 2 else np.zeros(n, np.int64)
    m = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,))
    sh = np.broadcast_to(np.asarray(q["shift"], np.int64), (n,))
    v = np.array([int(multiply_by_quantized_multiplier(np.int64(b[c]), int(m[c]), int(sh[c]))) for c in range(n)])
    lo, hi = node.attrs["act"] if node.attrs.get("act") is not None else (None, None)
    lo, hi = -128 if lo is None else max(int(lo), -128), 127 if hi is None else min(int(hi), 127)
    row = np.clip(v + int(q["output_offset"]), lo, hi)
    row[live] = 0
    return row.astype(np.int8)


# --------------------------------------------------------------------------- Helium (MVE) kernels
# The layouts ec_kernels_mve.h documents (templates/cortex_m/kernels/mve/): every packed filter
# folds the input offset into the bias (bias + input_offset * sum(w), int32 wrap-around like the C
# accumulators) and carries the per-channel requantization as four int32 vectors: bias,
# multiplier, left shift (max(shift, 0)) and right shift (min(shift, 0), the VRSHL amount).
def mve_chunks(k: int) -> int:
    return -(-k // 16)


def _mve_per_channel(v, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1), (n,))


def mve_fold_bias(w2d: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray:
    """bias + input_offset * sum(w) per output row, wrapped to int32 like the kernels' sums."""
    acc = np.asarray(w2d, np.int64).sum(axis=1) * int(input_offset)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64).reshape(-1)
    return ((acc + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _mve_requant_rows(folded: np.ndarray, multiplier, shift, n: int) -> np.ndarray:
    """[4, n] int32: bias, multiplier, left shift, right shift."""
    m = _mve_per_channel(multiplier, n)
    s = _mve_per_channel(shift, n)
    return np.stack([folded.astype(np.int64), m, np.maximum(s, 0), np.minimum(s, 0)]).astype(np.int32)


def pack_conv_mve(w: np.ndarray, bias: np.ndarray | None, input_offset: int, multiplier, shift) -> np.ndarray:
    """conv2d filter [O, KH, KW, I] for ec_conv2d_s8_mve: groups of 3 channels, each a 64-byte header
    (bias, multiplier, left, right: int32 x 4) and per 16-tap chunk 16 weights of each channel."""
    o = w.shape[0]
    w2 = np.asarray(w, np.int8).reshape(o, -1)
    k = w2.shape[1]
    rq = _mve_requant_rows(mve_fold_bias(w2, bias, input_offset), multiplier, shift, o)
    groups = -(-o // MVE_CONV_GROUP)
    kp = 16 * mve_chunks(k)
    out = []
    for g in range(groups):
        head = np.zeros((4, 4), np.int32)
        rows = np.zeros((MVE_CONV_GROUP, kp), np.int8)
        n = min(MVE_CONV_GROUP, o - g * MVE_CONV_GROUP)
        head[:, :n] = rq[:, g * MVE_CONV_GROUP:g * MVE_CONV_GROUP + n]
        rows[:n, :k] = w2[g * MVE_CONV_GROUP:g * MVE_CONV_GROUP + n]
        body = rows.reshape(MVE_CONV_GROUP, -1, 16).transpose(1, 0, 2)  # [chunk][channel][16]
        out += [head.view(np.int8).reshape(-1), body.reshape(-1)]
    return np.concatenate(out)


def pack_fc_mve(w: np.ndarray, bias: np.ndarray | None, input_offset: int, multiplier, shift) -> np.ndarray:
    """fully connected filter [O, I] for ec_fully_connected_s8_mve: groups of 6 rows, each a 128-byte
    header (bias, multiplier, left, right: int32 x 8) and per 16-input chunk 16 weights of each row."""
    w2 = np.asarray(w, np.int8)
    o, k = w2.shape
    rq = _mve_requant_rows(mve_fold_bias(w2, bias, input_offset), multiplier, shift, o)
    kp = 16 * mve_chunks(k)
    out = []
    for g in range(-(-o // MVE_FC_GROUP)):
        n = min(MVE_FC_GROUP, o - g * MVE_FC_GROUP)
        head = np.zeros((4, 8), np.int32)
        head[:, :n] = rq[:, g * MVE_FC_GROUP:g * MVE_FC_GROUP + n]
        rows = np.zeros((MVE_FC_GROUP, kp), np.int8)
        rows[:n, :k] = w2[g * MVE_FC_GROUP:g * MVE_FC_GROUP + n]
        out += [head.view(np.int8).reshape(-1), rows.reshape(MVE_FC_GROUP, -1, 16).transpose(1, 0, 2).reshape(-1)]
    return np.concatenate(out)


#: the header's lane order of ec_depthwise_conv2d_s8_mve (VMULLB / VMULLT on each half of int16 lanes)
MVE_DW_LANES = (0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15)
#: ... and of its 3x3 fast path ec_depthwise_conv2d_s8_mve3x3 (int8 products widened in two steps)
MVE_DW3X3_LANES = (0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15)


def pack_depthwise_mve(w: np.ndarray, bias: np.ndarray | None, input_offset: int, multiplier, shift,
                       lanes: tuple[int, ...] = MVE_DW_LANES) -> np.ndarray:
    """depthwise filter [1, KH, KW, C] (depth multiplier 1) for ec_depthwise_conv2d_s8_mve: groups of 16
    channels, each a 256-byte header (bias, multiplier, left, right: int32 x 16, in the kernel's lane
    order ``lanes``: for ec_depthwise_conv2d_s8_mve that of VMULLB / VMULLT on each half, channels
    0 2 4 6 | 1 3 5 7 | 8 10 12 14 | 9 11 13 15; ``MVE_DW3X3_LANES`` for its 3x3 fast path) and per tap
    the group's 16 weights."""
    taps = w.shape[1] * w.shape[2]
    c = w.shape[3]
    wt = np.asarray(w, np.int8).reshape(taps, c)
    rq = _mve_requant_rows(mve_fold_bias(wt.T, bias, input_offset), multiplier, shift, c)
    order = list(lanes)
    out = []
    for g in range(-(-c // MVE_DW_GROUP)):
        n = min(MVE_DW_GROUP, c - g * MVE_DW_GROUP)
        lanes = np.zeros((4, MVE_DW_GROUP), np.int32)
        lanes[:, :n] = rq[:, g * MVE_DW_GROUP:g * MVE_DW_GROUP + n]
        blk = np.zeros((taps, MVE_DW_GROUP), np.int8)
        blk[:, :n] = wt[:, g * MVE_DW_GROUP:g * MVE_DW_GROUP + n]
        out += [np.ascontiguousarray(lanes[:, order]).view(np.int8).reshape(-1), blk.reshape(-1)]
    return np.concatenate(out)
