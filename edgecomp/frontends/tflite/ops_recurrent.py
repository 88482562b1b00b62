"""UNIDIRECTIONAL_SEQUENCE_LSTM: the IR ``lstm`` (what TensorFlow Lite Micro runs: four gates,
no peepholes, projection or layer norm; int8 x 8 -> 16 or float32)."""
from __future__ import annotations

import numpy as np

from ... import ir
from ...errors import UnsupportedError
from .registry import tflite_op

TANH = 4  # tflite.ActivationFunctionType.TANH
#: the 24 inputs (TFLM's lstm_shared.h)
X, W_X, W_H, BIAS, H_STATE, C_STATE = 0, (1, 2, 3, 4), (5, 6, 7, 8), (12, 13, 14, 15), 18, 19
OPTIONAL_ABSENT = {9: "peephole weights", 10: "peephole weights", 11: "peephole weights",
                   16: "a projection", 17: "a projection", 20: "layer normalization",
                   21: "layer normalization", 22: "layer normalization", 23: "layer normalization"}


def _stack(t, names: tuple, suffix: str, where: str) -> str:
    """Four per-gate constants stacked into one [4H, ...] constant (per-row scales)."""
    arrs, scales, dtypes = [], [], set()
    for nm in names:
        dtype, shape, quant, arr = t._raw[nm]
        if arr is None:
            raise UnsupportedError(f"non-constant LSTM weights {nm!r}", where=where, fix="Freeze the weights")
        if quant is not None and quant.scale.size > 1 and dtype == "int8":
            raise UnsupportedError(f"per-channel LSTM weights {nm!r}", where=where,
                                   fix="Quantize each LSTM weight matrix per tensor (TFLM's integer LSTM needs it)")
        arrs.append(arr)
        dtypes.add(dtype)
        if quant is not None:
            scales.append(np.full(arr.shape[0], quant.scale[0], dtype=np.float32))
    if len(dtypes) != 1:
        raise UnsupportedError(f"LSTM {suffix} of mixed types {sorted(dtypes)}", where=where)
    data = np.concatenate(arrs, axis=0)
    quant = None
    if len(scales) == len(arrs) and dtypes != {"float32"}:
        s = np.concatenate(scales)
        quant = ir.QuantParams(s, np.zeros(s.size, np.int32), 0 if data.ndim > 1 else None)
    name = f"{names[0]}_{suffix}"
    t._raw[name] = (dtypes.pop(), data.shape, quant, data)
    return name


@tflite_op('UNIDIRECTIONAL_SEQUENCE_LSTM', inputs=1, check_dtypes=False)
def lower_lstm(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """lstm: the gates' matrices stacked (i, f, c, o); the state variables start at zero (as TFLM
    resets them) and carry their quantization into the node's attributes."""
    r = t.r
    if len(ins) != 24:
        raise r.bad(f"{where} has {len(ins)} inputs, TFLite's LSTM has 24")
    for i, what in OPTIONAL_ABSENT.items():
        if ins[i]:
            raise UnsupportedError(f"LSTM with {what}", where=where,
                                   fix="Use a plain LSTM (TFLite Micro's integer LSTM has no peepholes, projection or "
                                       "layer normalization either)")
    if not ins[W_X[0]]:
        raise UnsupportedError("LSTM with coupled input and forget gates (CIFG)", where=where,
                               fix="Use an LSTM with all four gates")
    if any(not ins[i] for i in W_X + W_H + BIAS + (H_STATE, C_STATE)):
        raise r.bad(f"{where} lacks weights, biases or state variables")
    o = t._options(op, t.tfl.UnidirectionalSequenceLSTMOptions)
    if o is None:
        raise r.bad(f"{where} has no options")
    if int(o.FusedActivationFunction()) != TANH:
        raise UnsupportedError("LSTM cell activation other than tanh", where=where, fix="Use tanh")
    x = ins[X]
    xs = t.shape(x)
    if len(xs) != 3:
        raise r.bad(f"{where}: input {list(xs)} is not [batch, time, features]")
    if bool(o.TimeMajor()) and xs[0] > 1:
        raise UnsupportedError("time-major LSTM input", where=where, fix="Convert with time_major=False")
    if xs[0] != 1:
        raise UnsupportedError(f"LSTM over a batch of {xs[0]}", where=where, fix="Convert with batch size 1")
    x_dtype = t._raw[x][0]
    hd, hshape, hq, _ = t._raw[ins[H_STATE]]
    cd, _, cq, _ = t._raw[ins[C_STATE]]
    H = int(hshape[-1])
    attrs: dict = {"cell_clip": float(o.CellClip()), "cell_act": "tanh", "sequence": True}
    if x_dtype == "int8":
        if hd != "int8" or cd != "int16" or hq is None or cq is None:
            raise UnsupportedError(f"integer LSTM with a {hd} hidden and {cd} cell state", where=where,
                                   fix="Quantize as TFLite does: int8 input and hidden state, int16 cell state")
        attrs["h_quant"] = ir.QuantParams(hq.scale[:1].copy(), hq.zero_point[:1].copy())
        attrs["cell_scale"] = float(cq.scale[0])
    elif x_dtype != "float32" or hd != "float32" or cd != "float32":
        raise UnsupportedError(f"{x_dtype} LSTM", where=where, fix="Use an int8 or a float32 LSTM")
    wx, wh, b = (_stack(t, tuple(ins[i] for i in W_X), "w_x", where), _stack(t, tuple(ins[i] for i in W_H), "w_h", where),
                 _stack(t, tuple(ins[i] for i in BIAS), "bias", where))
    if t._raw[wx][1] != (4 * H, xs[2]) or t._raw[wh][1] != (4 * H, H) or t._raw[b][1] != (4 * H,):
        raise r.bad(f"{where}: weights do not match the input {list(xs)} and {H} units")
    if x_dtype == "int8" and (t._raw[wx][0] != "int8" or t._raw[b][0] != "int32"):
        raise UnsupportedError("integer LSTM without int8 weights and int32 biases", where=where)
    if t._raw[outs[0]][1] != (1, xs[1], H):
        raise r.bad(f"{where}: output {list(t._raw[outs[0]][1])} is not [1, {xs[1]}, {H}]")
    t._add("lstm", [x, wx, wh, b], outs[:1], k, **attrs)
