"""QDQ folding of the recurrent layers: ``dequantize -> lstm / gru -> quantize`` becomes an int8 layer
(edgecomp's integer scheme for ONNX; ``compress.quantize_rnn`` puts those QDQ pairs around the
layers, which ONNX Runtime's quantizer leaves in float).

The weights are quantized here, symmetric per row (int8, scale max|row| / 127); biases to int32 at
s_x * s_w (the GRU's recurrent biases at 2^-15 * s_w: its hidden state is Q0.15).  An LSTM keeps
TFLM's integer LSTM arithmetic with its hidden state quantized like its output (the quantize after
it) and its cell state int16 at 2^CELL_LOG2 (|c| < 16: a cell grows by less than 1 a step, and
trained cells stay far below).  Initial states are quantized the same way.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .graph_edit import remove_dead

CELL_LOG2 = -11  # the ONNX scheme's LSTM cell state: Q4.11
Q15 = 2.0 ** -15


def _rows_q(g: ir.Graph, name: str) -> str:
    w = g.tensors[name].data.astype(np.float64)
    s = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    s = np.where(s > 0, s, np.float32(1e-8)).astype(np.float32)
    q = np.clip(np.round(w / s.astype(np.float64)[:, None]), -127, 127).astype(np.int8)
    qn = name + "_q"
    g.tensors[qn] = ir.Tensor(qn, q.shape, "int8", ir.QuantParams(s, np.zeros(s.size, np.int32), 0), q)
    return qn


def _bias_q(g: ir.Graph, name: str, scale: np.ndarray) -> str:
    b = g.tensors[name].data.astype(np.float64)
    s = scale.astype(np.float32)
    q = np.clip(np.round(b / s.astype(np.float64)), -2**31, 2**31 - 1).astype(np.int32)
    qn = name + "_q"
    g.tensors[qn] = ir.Tensor(qn, q.shape, "int32", ir.QuantParams(s, np.zeros(s.size, np.int32), 0), q)
    return qn


def _state_q(g: ir.Graph, name: str, scale: float, zp: int, dtype: str) -> str:
    info = np.iinfo(ir.np_dtype(dtype))
    v = g.tensors[name].data.astype(np.float64)
    q = np.clip(np.round(v / scale) + zp, info.min, info.max).astype(ir.np_dtype(dtype))
    qn = name + "_q"
    g.tensors[qn] = ir.Tensor(qn, q.shape, dtype, ir.QuantParams([scale], [zp]), q)
    return qn


def fold_recurrent(g: ir.Graph, ctx=None) -> ir.Graph:
    """Rewrite dequantize -> lstm / gru -> quantize (int8 both sides, constant weights) in place."""
    for n in list(g.nodes):
        if n.op not in ("lstm", "gru") or g.tensors[n.outputs[0]].dtype != "float32":
            continue
        p = g.producer(n.inputs[0])
        moves = []
        while p is not None and p.op == "reshape" and len(g.consumers(p.outputs[0])) == 1:
            moves.append(p)  # aliases between the dequantize and the layer: done on the int8 side
            p = g.producer(p.inputs[0])
        cons = g.consumers(n.outputs[0])
        if p is None or p.op != "dequantize" or len(cons) != 1 or cons[0].op != "quantize" \
                or n.outputs[0] in g.outputs:
            continue
        xq, yq = p.inputs[0], cons[0].outputs[0]
        if moves:
            xs = g.tensors[n.inputs[0]].shape
            q8 = f"{n.inputs[0]}_int8"
            g.tensors[q8] = ir.Tensor(q8, xs, g.tensors[xq].dtype, g.tensors[xq].quant)
            g.nodes.insert(g.nodes.index(n), ir.Node(f"{q8}_alias", "reshape", [xq], [q8], {"shape": tuple(xs)}))
            xq = q8
        if g.tensors[xq].dtype != "int8" or g.tensors[yq].dtype != "int8" \
                or not all(g.tensors[i].is_const for i in n.inputs[1:]):
            continue
        sx = np.float64(g.tensors[xq].quant.scale[0])
        yquant = g.tensors[yq].quant
        wx, wh = _rows_q(g, n.inputs[1]), _rows_q(g, n.inputs[2])
        swx = g.tensors[wx].quant.scale.astype(np.float64)
        swh = g.tensors[wh].quant.scale.astype(np.float64)
        ins = [xq, wx, wh]
        if n.op == "lstm":
            ins.append(_bias_q(g, n.inputs[3], sx * swx))
            cs = 2.0 ** CELL_LOG2
            if len(n.inputs) > 4:
                ins.append(_state_q(g, n.inputs[4], float(yquant.scale[0]), int(yquant.zero_point[0]), "int8"))
                ins.append(_state_q(g, n.inputs[5], cs, 0, "int16"))
            n.attrs["h_quant"] = ir.QuantParams(yquant.scale[:1].copy(), yquant.zero_point[:1].copy())
            n.attrs["cell_scale"] = cs
        else:
            ins.append(_bias_q(g, n.inputs[3], sx * swx))
            ins.append(_bias_q(g, n.inputs[4], Q15 * swh))
            if len(n.inputs) > 5:
                ins.append(_state_q(g, n.inputs[5], Q15, 0, "int16"))
        old = n.outputs[0]
        n.inputs = ins
        n.outputs = [yq]
        g.nodes.remove(cons[0])
        del g.tensors[old]
    return remove_dead(g)
