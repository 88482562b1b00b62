"""LSTM and GRU (forward, batch 1, fixed sequence length): the IR ``lstm`` / ``gru``.

ONNX's gate blocks (LSTM i, o, f, c; GRU z, r, h) become the IR's (LSTM i, f, c, o as TFLite; GRU
z, r, n), the two LSTM biases are added, the GRU keeps both (its candidate needs R's apart).  One
output is used: Y (every step, [T, 1, 1, H] = the IR's [1, T, H]) or Y_h (the last step, [1, 1, H]
= [1, H]).  Initial states: absent or constant (zero or not), or a model input (the interpreter
takes it; the C backend refuses it: write ec_state() instead).
"""
from __future__ import annotations

import numpy as np

from ...errors import ModelError, UnsupportedError
from .context import Ctx, shape_of
from .layout import _move, onnx_order, set_layout
from .registry import onnx_op

LSTM_ORDER = (0, 2, 3, 1)  # ONNX i, o, f, c -> IR i, f, c, o


def _blocks(a: np.ndarray, order, H: int) -> np.ndarray:
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def _const(c: Ctx, name: str, where: str, what: str) -> np.ndarray:
    v = c.consts.get(name)
    if v is None:
        raise UnsupportedError(f"non-constant {what} {name!r}", where=where, fix="Export with constant weights")
    return np.asarray(v, dtype=np.float32)


def _state(c: Ctx, ins: list, k: int, H: int, where: str, nm: str) -> str | None:
    """An initial state [1, 1, H] as an IR input [1, H]: a constant, a model tensor, or None (zero)."""
    if len(ins) <= k or not ins[k]:
        return None
    if ins[k] in c.consts:
        v = np.asarray(c.consts[ins[k]], dtype=np.float32)
        if v.size != H:
            raise UnsupportedError(f"initial state of {v.size} values for {H} units", where=where,
                                   fix="Use batch 1 and one direction")
        return c.const(f"{nm}_{'h0' if k == 5 else 'c0'}", v.reshape(1, H))
    x = c.name(ins[k])
    if x not in c.g.tensors or tuple(shape_of(c, ins[k])) != (1, 1, H):
        raise UnsupportedError(f"initial state {ins[k]!r}", where=where, fix="Give it as [1, 1, hidden_size]")
    return onnx_order(c, x, (1, H))


def _common(c: Ctx, n, a: dict, x: str, xs: tuple, where: str, gates: int):
    if a.get("direction", b"forward") not in (b"forward", "forward"):
        raise UnsupportedError(f"{n.op_type} direction {a['direction']!r}", where=where,
                               fix="Use a forward (unidirectional) layer")
    ins = list(n.input)
    if len(ins) > 4 and ins[4]:
        raise UnsupportedError(f"{n.op_type} with sequence_lens", where=where,
                               fix="Export with a fixed sequence length (no packed sequences)")
    layout = int(a.get("layout", 0))
    if len(xs) != 3:
        raise ModelError(f"{n.op_type} input {list(xs)} is not 3-D", where=where)
    T, B, I = (xs[0], xs[1], xs[2]) if layout == 0 else (xs[1], xs[0], xs[2])
    if B != 1:
        raise UnsupportedError(f"{n.op_type} over a batch of {B}", where=where, fix="Export with batch size 1")
    xi = onnx_order(c, x, tuple(c.g.tensors[x].shape))
    if tuple(c.g.tensors[xi].shape) != (1, T, I):
        if c.g.tensors[xi].shape[0] != 1:
            raise UnsupportedError(f"{n.op_type} input {list(xs)} whose first axis is the sequence", where=where,
                                   fix="Give the model input as [1, steps, features] (PyTorch: batch_first=True)")
        xi = _move(c, xi, "reshape", (1, T, I), f"{xi}_steps")  # an alias: the same bytes
    W = _const(c, ins[1], where, "input weights")
    R = _const(c, ins[2], where, "recurrent weights")
    H = int(a.get("hidden_size", R.shape[-1]))
    if W.shape != (1, gates * H, I) or R.shape != (1, gates * H, H):
        raise ModelError(f"{n.op_type} weights {list(W.shape)} / {list(R.shape)} do not match {H} units and "
                         f"{I} inputs", where=where)
    B_ = _const(c, ins[3], where, "biases").reshape(-1) if len(ins) > 3 and ins[3] else np.zeros(2 * gates * H, np.float32)
    if B_.size != 2 * gates * H:
        raise ModelError(f"{n.op_type} bias of {B_.size} values", where=where)
    outs = list(n.output)
    used = [k for k, o in enumerate(outs) if o and o in c.used]
    if not used:
        used = [0]
    if len(used) > 1 or used[0] > 1:
        raise UnsupportedError(f"{n.op_type} with outputs {[outs[k] for k in used]} used", where=where,
                               fix="Use either Y (every step) or Y_h (the last step), not Y_c or both")
    seq = used[0] == 0
    o = outs[used[0]]
    shape = (1, T, H) if seq else (1, H)
    c.shapes[o] = (T, 1, 1, H) if seq else (1, 1, H)
    set_layout(c, o, None)
    return xi, W[0], R[0], B_, H, T, seq, o, shape


def _check_acts(a: dict, want: list, where: str, op: str) -> None:
    acts = [v.decode() if isinstance(v, bytes) else v for v in a.get("activations", [])]
    if acts and [s.lower() for s in acts] != [s.lower() for s in want]:
        raise UnsupportedError(f"{op} activations {acts}", where=where, fix=f"Use the default {want}")


@onnx_op("LSTM")
def lower_lstm(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    _check_acts(a, ["Sigmoid", "Tanh", "Tanh"], where, "LSTM")
    if int(a.get("input_forget", 0)):
        raise UnsupportedError("LSTM with coupled input and forget gates", where=where, fix="Use input_forget=0")
    ins = list(n.input)
    if len(ins) > 7 and ins[7]:
        p = c.consts.get(ins[7])
        if p is None or np.any(p != 0):
            raise UnsupportedError("LSTM with peephole weights", where=where, fix="Use an LSTM without peepholes")
    if float(a.get("clip", 0.0) or 0.0) > 0:
        raise UnsupportedError("LSTM with clip (ONNX clips the gates' pre-activations)", where=where,
                               fix="Export without clip")
    xi, W, R, B, H, T, seq, o, shape = _common(c, n, a, x, xs, where, 4)
    nm = n.name or o
    wx = c.const(f"{nm}_w_x", _blocks(W, LSTM_ORDER, H))
    wh = c.const(f"{nm}_w_h", _blocks(R, LSTM_ORDER, H))
    b = c.const(f"{nm}_bias", _blocks(B[:4 * H] + B[4 * H:], LSTM_ORDER, H))
    h0, c0 = _state(c, ins, 5, H, where, nm), _state(c, ins, 6, H, where, nm)
    inputs = [xi, wx, wh, b]
    if h0 or c0:
        inputs += [h0 or c.const(f"{nm}_h0", np.zeros((1, H), np.float32)),
                   c0 or c.const(f"{nm}_c0", np.zeros((1, H), np.float32))]
    c.add_tensor(o, shape)
    c.add_node(n.name or o, "lstm", inputs, [o], cell_clip=0.0, cell_act="tanh", sequence=seq)


@onnx_op("GRU")
def lower_gru(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    _check_acts(a, ["Sigmoid", "Tanh"], where, "GRU")
    if float(a.get("clip", 0.0) or 0.0) > 0:
        raise UnsupportedError("GRU with clip", where=where, fix="Export without clip")
    ins = list(n.input)
    xi, W, R, B, H, T, seq, o, shape = _common(c, n, a, x, xs, where, 3)
    nm = n.name or o
    inputs = [xi, c.const(f"{nm}_w_x", W), c.const(f"{nm}_w_h", R), c.const(f"{nm}_b_x", B[:3 * H]),
              c.const(f"{nm}_b_h", B[3 * H:])]
    h0 = _state(c, ins, 5, H, where, nm)
    if h0:
        inputs.append(h0)
    c.add_tensor(o, shape)
    c.add_node(n.name or o, "gru", inputs, [o], linear_before_reset=bool(int(a.get("linear_before_reset", 0))),
               sequence=seq)
