"""Weight packers: the constant layouts the optimized kernels read, computed at compile time.

Each packer names the kernel that reads its output.  Packing never changes a value, only
where it sits (and, for the folded bias, adds the input offset's share exactly as the kernel's
int32 arithmetic would).
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....numerics import multiply_by_quantized_multiplier


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
