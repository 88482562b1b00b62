"""Integer parameters of the recurrent layers (``lstm``, ``gru``), read by the interpreter
(:mod:`edgecomp.ops.recurrent`) and the C emitter alike; part of :mod:`edgecomp.passes.requantize`.

LSTM: exactly TFLM's ``PrepareGateParametersInteger`` / ``CreateGateParams`` /
``CreateInterGateMulParams`` / ``CreateLstmCellStateInfo`` (double products of float32 scales,
``QuantizeMultiplier``), with the multipliers of each gate's two fully connected layers given per
row (TFLite's per-gate scale repeated over the gate's rows).  GRU: edgecomp's scheme with the same
int16 gate pre-activations (2^-12) and an int16 Q0.15 hidden state.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import ModelError, UnsupportedError
from ..numerics import lstm_tanh_params, quantize_multiplier

GATE_SCALE = 2.0 ** -12  # int16 gate pre-activations: Q3.12 (TFLM's nonlinear_input_scale)
Q15 = 2.0 ** -15  # sigmoid / tanh outputs (and the GRU's hidden state): Q0.15


def _qm(real: float) -> tuple[int, int]:
    return quantize_multiplier(real)


def row_scales(t: ir.Tensor, rows: int, gates: int, where: str) -> np.ndarray:
    """A weight matrix's scale per row: one per tensor, per gate or per row."""
    if t.quant is None:
        raise ModelError(f"int8 weights {t.name!r} have no scale", where=where)
    s = np.asarray(t.quant.scale, dtype=np.float32)
    if np.any(np.asarray(t.quant.zero_point) != 0):
        raise UnsupportedError("asymmetric recurrent weights", where=where, fix="Quantize weights symmetrically")
    if s.size == 1:
        return np.full(rows, s[0], dtype=np.float32)
    if s.size == gates:
        return np.repeat(s, rows // gates)
    if s.size == rows:
        return s
    raise ModelError(f"weights {t.name!r} have {s.size} scales for {rows} rows", where=where)


def _fc_mults(s_in: float, scales: np.ndarray) -> tuple[list[int], list[int]]:
    ms = [_qm(float(np.float64(s_in) * np.float64(w)) / GATE_SCALE) for w in scales]
    return [m for m, _ in ms], [s for _, s in ms]


def cell_log2(cell_scale: float) -> int:
    """TFLM's CheckedLog2 of the cell state's scale (float32 arithmetic, rounded)."""
    v = np.float32(math.log(np.float32(cell_scale))) * np.float32(1.0 / np.float32(math.log(2.0)))
    return int(np.round(v))


def lstm_q(graph: ir.Graph, node: ir.Node) -> dict:
    where = f"node {node.name!r}"
    x = graph.tensors[node.inputs[0]]
    wx, wh = graph.tensors[node.inputs[1]], graph.tensors[node.inputs[2]]
    hq = node.attrs.get("h_quant")
    cs = node.attrs.get("cell_scale")
    if x.quant is None or hq is None or cs is None:
        raise ModelError("integer LSTM without the quantization of its input, hidden or cell state", where=where)
    sx, zx = float(x.quant.scale[0]), int(x.quant.zero_point[0])
    sh, zh = float(np.float32(hq.scale[0])), int(hq.zero_point[0])
    rows = wx.shape[0]
    xm, xs = _fc_mults(sx, row_scales(wx, rows, 4, where))
    hm, hs = _fc_mults(sh, row_scales(wh, rows, 4, where))
    cs32 = np.float64(np.float32(cs))
    clip = float(node.attrs.get("cell_clip", 0.0) or 0.0)
    qclip = int(min(max(np.float64(np.float32(clip)) / cs32, -32768.0), 32767.0)) if clip > 0 else 0
    tm, tsh = lstm_tanh_params(cell_log2(cs))
    return {"x_offset": -zx, "h_offset": -zh, "h_zp": zh, "x_mult": xm, "x_shift": xs, "h_mult": hm,
            "h_shift": hs, "fc_mul": _qm(Q15 * float(cs32) / float(cs32)), "ic_mul": _qm(Q15 * Q15 / float(cs32)),
            "out_mul": _qm(Q15 * Q15 / sh), "cell_clip": qclip, "tanh_mult": tm, "tanh_shift": tsh}


def gru_q(graph: ir.Graph, node: ir.Node) -> dict:
    where = f"node {node.name!r}"
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    wx, wh = graph.tensors[node.inputs[1]], graph.tensors[node.inputs[2]]
    if x.quant is None or y.quant is None:
        raise ModelError("integer GRU without the quantization of its input or output", where=where)
    rows = wx.shape[0]
    xm, xs = _fc_mults(float(x.quant.scale[0]), row_scales(wx, rows, 3, where))
    hm, hs = _fc_mults(Q15, row_scales(wh, rows, 3, where))
    om, osh = _qm(Q15 / float(np.float32(y.quant.scale[0])))
    return {"x_offset": -int(x.quant.zero_point[0]), "x_mult": xm, "x_shift": xs, "h_mult": hm, "h_shift": hs,
            "r_mul": _qm(Q15), "out_mult": om, "out_shift": osh, "out_zp": int(y.quant.zero_point[0])}
