"""Recurrent test models: TFLite UNIDIRECTIONAL_SEQUENCE_LSTM flatbuffers (built with
conftest.build_tflite, quantized the way TFLite's converter does for TFLM's integer LSTM) and
PyTorch LSTM / GRU modules exported to ONNX.  Shared by the tests and bench/sequence.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import build_tflite


def tflite_lstm(T: int = 8, I: int = 5, H: int = 6, *, dtype: str = "int8", seed: int = 0,
                cell_clip: float = 0.0, cell_log2: int = -11, time_major: bool = False) -> bytes:
    """A one-layer LSTM [1, T, I] -> [1, T, H] as TFLite writes it (24 inputs, state variables).

    int8: weights int8 per tensor, biases int32 at s_x * s_w, hidden state int8 (asymmetric), cell
    state int16 at 2^cell_log2, as the TFLite converter quantizes for TFLM's 8x8->16 kernel."""
    rng = np.random.default_rng(seed)
    wx = [rng.normal(0, 0.6, (H, I)).astype(np.float32) for _ in range(4)]
    wh = [rng.normal(0, 0.4, (H, H)).astype(np.float32) for _ in range(4)]
    bs = [rng.normal(0, 0.5, H).astype(np.float32) for _ in range(4)]
    bs[1] += 1.0  # forget bias
    tensors: list[dict] = []

    def add(**t) -> int:
        tensors.append(t)
        return len(tensors) - 1

    xs, sx, zx = 0.02, 2.0 / 255, -3
    sh, zh = 1.0 / 128, 2
    if dtype == "int8":
        x = add(name="input", shape=[1, T, I], dtype="int8", scale=[sx], zero_point=[zx])
        idx_wx, idx_wh, idx_b = [], [], []
        for g in range(4):
            s = float(np.abs(wx[g]).max() / 127)
            idx_wx.append(add(name=f"wx{g}", shape=[H, I], dtype="int8", scale=[s], zero_point=[0],
                              data=np.clip(np.round(wx[g] / s), -127, 127).astype(np.int8)))
            sb = np.float32(sx) * np.float32(s)
            idx_b.append(add(name=f"b{g}", shape=[H], dtype="int32", scale=[float(sb)], zero_point=[0],
                             data=np.round(bs[g] / sb).astype(np.int32)))
        for g in range(4):
            s = float(np.abs(wh[g]).max() / 127)
            idx_wh.append(add(name=f"wh{g}", shape=[H, H], dtype="int8", scale=[s], zero_point=[0],
                              data=np.clip(np.round(wh[g] / s), -127, 127).astype(np.int8)))
        hs = add(name="h_state", shape=[1, H], dtype="int8", scale=[sh], zero_point=[zh], variable=True)
        cs = add(name="c_state", shape=[1, H], dtype="int16", scale=[2.0 ** cell_log2], zero_point=[0],
                 variable=True)
        y = add(name="output", shape=[1, T, H], dtype="int8", scale=[sh], zero_point=[zh])
    else:
        x = add(name="input", shape=[1, T, I], dtype="float32")
        idx_wx = [add(name=f"wx{g}", shape=[H, I], dtype="float32", data=wx[g]) for g in range(4)]
        idx_b = [add(name=f"b{g}", shape=[H], dtype="float32", data=bs[g]) for g in range(4)]
        idx_wh = [add(name=f"wh{g}", shape=[H, H], dtype="float32", data=wh[g]) for g in range(4)]
        hs = add(name="h_state", shape=[1, H], dtype="float32", variable=True)
        cs = add(name="c_state", shape=[1, H], dtype="float32", variable=True)
        y = add(name="output", shape=[1, T, H], dtype="float32")
    ins = [x] + idx_wx + idx_wh + [-1, -1, -1] + idx_b + [-1, -1, hs, cs, -1, -1, -1, -1]
    opts = ("UnidirectionalSequenceLSTMOptions", {"FusedActivationFunction": 4, "CellClip": float(cell_clip),
                                                  "ProjClip": 0.0, "TimeMajor": bool(time_major)})
    ops = [{"op": "UNIDIRECTIONAL_SEQUENCE_LSTM", "inputs": ins, "outputs": [y], "options": opts}]
    return build_tflite(tensors, ops, [x], [y])


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
