"""Recurrent layers: ``lstm`` and ``gru`` over a whole sequence (batch 1), the interpreter's semantics.

One IR op per layer, its weights as constants (see docs/internals.md, "Recurrent layers", for why
not a sub-graph of IR ops).  Activations are [1, T, features] (time major within the one batch);
the output is every step's hidden state [1, T, H] (``attrs["sequence"]``) or the last one [1, H].

``lstm`` inputs: x [1, T, I], w_x [4H, I], w_h [4H, H], bias [4H], then optionally h0 [1, H] and
c0 [1, H] (absent: zero).  Gate blocks of H rows in TFLite's order: input, forget, cell, output.
attrs: ``cell_clip`` (0: none), ``cell_act`` ("tanh" or "sigmoid"), ``sequence``; integer layers
also ``h_quant`` (the int8 hidden state's QuantParams) and ``cell_log2`` (the int16 cell state's
scale is 2^cell_log2).

int8 ``lstm`` is TensorFlow Lite Micro's integer LSTM (``lstm_eval.h``, int8 x 8 -> 16): each gate
is two fully connected layers to int16 at scale 2^-12 (x with the bias, h without), added with
int16 saturation, then TFLM's int16 sigmoid / tanh to Q0.15; the cell state is int16 at
2^cell_log2, f*c and i*g by TFLM's int16 MulElementwise; h = o * tanh(c) rounds to the int8
hidden state, which is also the step's output.  The weights' scales may differ per row (TFLite
gives one per gate; edgecomp's ONNX scheme one per row).

``gru`` inputs: x [1, T, I], w_x [3H, I], w_h [3H, H], b_x [3H], b_h [3H], optionally h0 [1, H].
Gate blocks in ONNX's order: update z, reset r, candidate n.  attrs: ``linear_before_reset``,
``sequence``.  int8 ``gru`` (edgecomp's scheme, no TFLM counterpart): the same int16 gate
pre-activations (2^-12) and TFLM sigmoid / tanh; the hidden state is int16 Q0.15 (kept between
steps at full precision) and requantized to the int8 output each step;
h' = ((32768 - z) n + z h + 2^14) >> 15.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import numerics as nx
from ..errors import UnsupportedError
from .common import is_int, q_of

I16_MIN, I16_MAX = -32768, 32767


def _macs(graph: ir.Graph, node: ir.Node) -> int:
    x = graph.tensors[node.inputs[0]]
    wx, wh = graph.tensors[node.inputs[1]], graph.tensors[node.inputs[2]]
    return int(x.shape[1]) * (wx.size + wh.size)


def _sat16(v: np.ndarray) -> np.ndarray:
    return np.clip(v, I16_MIN, I16_MAX)


def fc_s16(v: np.ndarray, w: np.ndarray, offset: int, bias, mult, shift) -> np.ndarray:
    """TFLM's reference fully connected to int16 (acc = bias + sum(w (v + offset)), per-row
    MultiplyByQuantizedMultiplier, no zero point, int16 range): v [N, K], w [R, K] -> [N, R]."""
    acc = (v.astype(np.int64) + int(offset)) @ w.astype(np.int64).T  # exact: |acc| < 2^53
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    acc = nx.wrap_int32(acc)
    return _sat16(nx.multiply_by_quantized_multiplier(acc, mult, shift))


def mul_s16(a: np.ndarray, b: np.ndarray, mult: int, shift: int, zp: int = 0, lo: int = I16_MIN,
            hi: int = I16_MAX) -> np.ndarray:
    """TFLM's reference_integer_ops::MulElementwise (offsets 0): clamp(zp + MBQM(a b))."""
    p = a.astype(np.int64) * b.astype(np.int64)
    return np.clip(nx.multiply_by_quantized_multiplier(p, mult, shift) + int(zp), lo, hi)


def _state(env: dict, node: ir.Node, k: int, n: int, h: int, fill) -> np.ndarray:
    if len(node.inputs) > k and node.inputs[k]:
        v = np.asarray(env[node.inputs[k]]).reshape(-1, h)
        return np.broadcast_to(v, (n, h)).astype(np.float64 if isinstance(fill, float) else np.int64).copy()
    return np.full((n, h), fill, dtype=np.float64 if isinstance(fill, float) else np.int64)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@ir.define_op("lstm", layout="other", macs=_macs)
def lstm(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """LSTM over the sequence (TFLite gate order i, f, c, o; int8: TFLM's integer LSTM)."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    wx, wh = env[node.inputs[1]], env[node.inputs[2]]
    bias = env[node.inputs[3]] if len(node.inputs) > 3 and node.inputs[3] else None
    H = wh.shape[1]
    n, T = x.shape[0], x.shape[1]
    seq = bool(node.attrs.get("sequence", True))
    ys = []
    if not is_int(out):
        act = np.tanh if node.attrs.get("cell_act", "tanh") == "tanh" else _sigmoid
        clip = float(node.attrs.get("cell_clip", 0.0) or 0.0)
        h = _state(env, node, 4, n, H, 0.0)
        c = _state(env, node, 5, n, H, 0.0)
        wx64, wh64 = wx.astype(np.float64), wh.astype(np.float64)
        b = np.zeros(4 * H) if bias is None else bias.astype(np.float64)
        for t in range(T):
            z = x[:, t].astype(np.float64) @ wx64.T + h @ wh64.T + b
            i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * act(g)
            if clip > 0:
                c = np.clip(c, -clip, clip)
            h = _sigmoid(o) * np.tanh(c)
            ys.append(h.astype(np.float32))
        y = np.stack(ys, axis=1) if seq else ys[-1]
        return y.astype(np.float32)
    if x.dtype != np.int8 or wx.dtype != np.int8 or wh.dtype != np.int8:
        raise UnsupportedError("integer LSTM other than int8 activations and int8 weights", where=f"node {node.name!r}")
    q = q_of(graph, node)
    h = _state(env, node, 4, n, H, int(q["h_zp"]))
    c = _state(env, node, 5, n, H, 0)
    bias = None if bias is None else bias.astype(np.int64)
    xm, xs = np.asarray(q["x_mult"]), np.asarray(q["x_shift"])
    hm, hs = np.asarray(q["h_mult"]), np.asarray(q["h_shift"])
    tm, tsh = int(q["tanh_mult"]), int(q["tanh_shift"])
    clip = int(q["cell_clip"])
    cell_sig = node.attrs.get("cell_act", "tanh") == "sigmoid"
    for t in range(T):
        gx = fc_s16(x[:, t], wx, q["x_offset"], bias, xm, xs)
        gh = fc_s16(h, wh, q["h_offset"], None, hm, hs)
        pre = _sat16(gx + gh)
        i, f, g, o = (pre[:, k * H:(k + 1) * H] for k in range(4))
        f, i, o = nx.sigmoid_s16(f), nx.sigmoid_s16(i), nx.sigmoid_s16(o)
        g = nx.sigmoid_s16(g) if cell_sig else nx.tanh_s16(g)
        c = mul_s16(f, c, *q["fc_mul"])
        c = _sat16(c + mul_s16(i, g, *q["ic_mul"]))
        if clip > 0:
            c = np.clip(c, -clip, clip)
        h = mul_s16(nx.tanh_s16(c, tm, tsh), o, *q["out_mul"], q["h_zp"], -128, 127)
        ys.append(h.astype(np.int8))
    return np.stack(ys, axis=1) if seq else ys[-1]


@ir.define_op("gru", layout="other", macs=_macs)
def gru(graph: ir.Graph, node: ir.Node, env: dict) -> np.ndarray:
    """GRU over the sequence (ONNX gate order z, r, n; int8: edgecomp's int16-state scheme)."""
    x = env[node.inputs[0]]
    out = graph.tensors[node.outputs[0]]
    wx, wh = env[node.inputs[1]], env[node.inputs[2]]
    bx, bh = env[node.inputs[3]], env[node.inputs[4]]
    H = wh.shape[1]
    n, T = x.shape[0], x.shape[1]
    seq = bool(node.attrs.get("sequence", True))
    lbr = bool(node.attrs.get("linear_before_reset", False))
    ys = []
    if not is_int(out):
        h = _state(env, node, 5, n, H, 0.0)
        wx64, wh64 = wx.astype(np.float64), wh.astype(np.float64)
        bx64, bh64 = bx.astype(np.float64), bh.astype(np.float64)
        for t in range(T):
            a = x[:, t].astype(np.float64) @ wx64.T + bx64
            zr = a[:, :2 * H] + h @ wh64[:2 * H].T + bh64[:2 * H]
            z, r = _sigmoid(zr[:, :H]), _sigmoid(zr[:, H:])
            if lbr:
                cand = np.tanh(a[:, 2 * H:] + r * (h @ wh64[2 * H:].T + bh64[2 * H:]))
            else:
                cand = np.tanh(a[:, 2 * H:] + (r * h) @ wh64[2 * H:].T + bh64[2 * H:])
            h = (1.0 - z) * cand + z * h
            ys.append(h.astype(np.float32))
        y = np.stack(ys, axis=1) if seq else ys[-1]
        return y.astype(np.float32)
    if x.dtype != np.int8 or wx.dtype != np.int8 or wh.dtype != np.int8:
        raise UnsupportedError("integer GRU other than int8 activations and int8 weights", where=f"node {node.name!r}")
    q = q_of(graph, node)
    h = _state(env, node, 5, n, H, 0)
    xm, xs = np.asarray(q["x_mult"]), np.asarray(q["x_shift"])
    hm, hs = np.asarray(q["h_mult"]), np.asarray(q["h_shift"])
    bx, bh = bx.astype(np.int64), bh.astype(np.int64)
    for t in range(T):
        gx = fc_s16(x[:, t], wx, q["x_offset"], bx, xm, xs)
        if lbr:
            gh = fc_s16(h, wh, 0, bh, hm, hs)
            zr = _sat16(gx[:, :2 * H] + gh[:, :2 * H])
            z, r = nx.sigmoid_s16(zr[:, :H]), nx.sigmoid_s16(zr[:, H:])
            cand = nx.tanh_s16(_sat16(gx[:, 2 * H:] + mul_s16(r, gh[:, 2 * H:], *q["r_mul"])))
        else:
            gh = fc_s16(h, wh[:2 * H], 0, bh[:2 * H], hm[:2 * H], hs[:2 * H])
            zr = _sat16(gx[:, :2 * H] + gh)
            z, r = nx.sigmoid_s16(zr[:, :H]), nx.sigmoid_s16(zr[:, H:])
            rh = mul_s16(r, h, *q["r_mul"])
            gn = fc_s16(rh, wh[2 * H:], 0, bh[2 * H:], hm[2 * H:], hs[2 * H:])
            cand = nx.tanh_s16(_sat16(gx[:, 2 * H:] + gn))
        h = _sat16(((32768 - z) * cand + z * h + (1 << 14)) >> 15)
        y = np.clip(nx.multiply_by_quantized_multiplier(h, q["out_mult"], q["out_shift"]) + int(q["out_zp"]),
                    -128, 127)
        ys.append(y.astype(np.int8))
    return np.stack(ys, axis=1) if seq else ys[-1]
