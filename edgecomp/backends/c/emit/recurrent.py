"""lstm and gru layers: ec_kernels_rnn (one call per layer over its whole sequence).

Each layer's state (h, then c for an LSTM) is a slice of the model's state buffer (``ec_state``,
outside the arena: it outlives an inference when the model streams), set by ``ec_state_reset()``
to the initial states (the model's constants, or zero); its gate scratch is a workspace in the
arena (:func:`scratch_bytes`, planned by ``kernel_plan.plan_memory_pass``).
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....errors import UnsupportedError
from ....numerics import sigmoid_table_u16
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_float, c_int, shape_text

RECURRENT_OPS = ("lstm", "gru")


def scratch_bytes(g: ir.Graph, node: ir.Node) -> int:
    """Arena bytes of a recurrent layer's gate scratch (LSTM: 4 H values, GRU: 8 H)."""
    if node.op not in RECURRENT_OPS:
        return 0
    H = g.tensors[node.inputs[2]].shape[1]
    eb = 4 if g.tensors[node.outputs[0]].dtype == "float32" else 2
    return (4 if node.op == "lstm" else 8) * H * eb


def state_layout(g: ir.Graph, node: ir.Node) -> list[tuple[str, str, int]]:
    """The node's state slices: [(name, C type, elements)] (LSTM: h, c; GRU: h)."""
    H = g.tensors[node.inputs[2]].shape[1]
    f = g.tensors[node.outputs[0]].dtype == "float32"
    if node.op == "lstm":
        return [("h", "float" if f else "int8_t", H), ("c", "float" if f else "int16_t", H)]
    return [("h", "float" if f else "int16_t", H)]


def _state_slices(gen, L) -> list[str]:
    """Reserve the layer's state in ec_state; write its reset code; return the C pointers."""
    node, g = L.node, gen.g
    init_idx = 4 if node.op == "lstm" else 5
    ptrs = []
    for k, (what, ctype, n) in enumerate(state_layout(g, node)):
        off = gen.state_bytes
        nbytes = n * {"float": 4, "int8_t": 1, "int16_t": 2}[ctype]
        gen.state_bytes += -(-nbytes // 4) * 4
        ptr = f"(({ctype} *)(ec_state_bytes + {off}))"
        ptrs.append(ptr)
        idx = init_idx + k
        init = node.inputs[idx] if len(node.inputs) > idx and node.inputs[idx] else None
        if init is not None:
            t = g.tensors[init]
            if not t.is_const:
                raise UnsupportedError(f"initial state {init!r} as a model input", where=f"node {node.name!r}",
                                       fix="Give the initial state as a constant, or write it into ec_state() "
                                           "after ec_state_reset()")
            want = {"float": "float32", "int8_t": "int8", "int16_t": "int16"}[ctype]
            if t.dtype != want or t.size != n:
                raise UnsupportedError(f"initial state {init!r} is {t.dtype} {shape_text(t.shape)}, the layer keeps "
                                       f"{want} [{n}]", where=f"node {node.name!r}")
            arr = gen.const_array(L.base, f"{what}0", t.data.reshape(-1), ctype, f"{node.name}: initial {what}")
            gen.state_resets.append(f"memcpy({ptr}, {arr}, {nbytes}); {c_comment(f'{node.name}: {what}0')}")
        else:
            fill = 0
            if what == "h" and ctype == "int8_t":
                fill = int(node.attrs["q"]["h_zp"]) & 0xFF
            gen.state_resets.append(f"memset({ptr}, {fill}, {nbytes}); {c_comment(f'{node.name}: {what} = 0')}")
    return ptrs


def _sigmoid_table(gen) -> str:
    if getattr(gen, "sigmoid_table", None) is None:
        gen.sigmoid_table = gen.const_array("ec_rnn", "sigmoid_table", sigmoid_table_u16(), "uint16_t",
                                            "TFLite's sigmoid_table_uint16: sigmoid(i / 24) in 0.16 fixed point")
    return gen.sigmoid_table


@kernel("ec_lstm_s8", "lstm", "int8", groups=("rnn",))
@kernel("ec_lstm_f32", "lstm", "float32", groups=("rnn",))
@kernel("ec_gru_s8", "gru", "int8", groups=("rnn",))
@kernel("ec_gru_f32", "gru", "float32", groups=("rnn",))
def emit_rnn(gen, L, k) -> str:
    """A recurrent layer: ec_rnn_params_t, its weights, state slices and the call."""
    node, x, out, g = L.node, L.x, L.out, gen.g
    s8 = out.dtype == "int8"
    lstm = node.op == "lstm"
    wx, wh = g.tensors[node.inputs[1]], g.tensors[node.inputs[2]]
    H, I, T = wh.shape[1], wx.shape[1], x.shape[1]
    if x.shape != (1, T, I) or x.dtype != out.dtype:
        raise UnsupportedError(f"{node.op} input {shape_text(x.shape)} {x.dtype}", where=f"node {node.name!r}",
                               fix="Feed the recurrent layer [1, steps, features] of its output's type")
    wt = "int8_t" if s8 else "float"
    bt = "int32_t" if s8 else "float"
    w_x, w_h = gen.const(node, 1, "w_x", wt), gen.const(node, 2, "w_h", wt)
    biases = [gen.const(node, 3, "bias" if lstm else "b_x", bt) or "NULL"]
    if not lstm:
        biases.append(gen.const(node, 4, "b_h", bt))
    ptrs = _state_slices(gen, L)
    ws_off, ws_bytes = gen.plan.workspace[node.name]
    scratch = f"(({'int16_t' if s8 else 'float'} *)(arena.bytes + {ws_off}))"
    flags = []
    if lstm and node.attrs.get("cell_act", "tanh") == "sigmoid":
        flags.append("EC_RNN_CELL_SIGMOID")
    if not lstm and node.attrs.get("linear_before_reset"):
        flags.append("EC_RNN_LINEAR_BEFORE_RESET")
    seq = bool(node.attrs.get("sequence", True))
    fields = [("steps", str(T)), ("in_features", str(I)), ("units", str(H)), ("sequence", str(int(seq))),
              ("kind", "EC_RNN_LSTM" if lstm else "EC_RNN_GRU"), ("flags", " | ".join(flags) or "0")]
    if s8:
        q = gen.q(node)
        rows = wx.shape[0]

        def arr(name, vals, ctype):
            return gen.const_array(L.base, name, np.broadcast_to(np.asarray(vals, np.int64), (rows,)), ctype,
                                   f"{node.name}: {name}")
        fields += [("x_offset", c_int(q["x_offset"])), ("h_offset", c_int(q.get("h_offset", 0))),
                   ("h_zp", c_int(q["h_zp"] if lstm else q["out_zp"])),
                   ("x_mult", arr("x_mult", q["x_mult"], "int32_t")), ("x_shift", arr("x_shift", q["x_shift"], "int8_t")),
                   ("h_mult", arr("h_mult", q["h_mult"], "int32_t")), ("h_shift", arr("h_shift", q["h_shift"], "int8_t"))]
        m1 = q["fc_mul"] if lstm else q["r_mul"]
        m2 = q["ic_mul"] if lstm else (0, 0)
        m3 = q["out_mul"] if lstm else (q["out_mult"], q["out_shift"])
        fields += [("m1", c_int(m1[0])), ("s1", c_int(m1[1])), ("m2", c_int(m2[0])), ("s2", c_int(m2[1])),
                   ("m3", c_int(m3[0])), ("s3", c_int(m3[1]))]
        if lstm:
            fields += [("cell_clip", c_int(q["cell_clip"])), ("tanh_mult", c_int(q["tanh_mult"])),
                       ("tanh_shift", c_int(q["tanh_shift"]))]
        fields.append(("sigmoid_table", _sigmoid_table(gen)))
    else:
        fields.append(("cell_clip_f", c_float(float(node.attrs.get("cell_clip", 0.0) or 0.0))))
    gen.struct("ec_rnn_params_t", L.base, fields, c_comment(f"{node.name}: {node.op}"))
    L.head.append(f"  {T} steps, {H} units, {'every step' if seq else 'the last step'} out; state in ec_state, "
                  f"{ws_bytes}-byte gate scratch at {ws_off}")
    if lstm:
        return (f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {w_x}, {w_h}, {biases[0]}, {ptrs[0]}, {ptrs[1]}, "
                f"{scratch}, {gen.tensor(out.name)});")
    return (f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {w_x}, {w_h}, {biases[0]}, {biases[1]}, {ptrs[0]}, "
            f"{scratch}, {gen.tensor(out.name)});")
