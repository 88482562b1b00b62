"""Unary activation layers: lut (int8 through a 256-entry table), unary (float32 functions) and
prelu (int8: TFLM's two multipliers, alpha broadcast; float32)."""
from __future__ import annotations

import numpy as np

from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_float, c_int
from .binary import bcast, bcast_init

#: ec_unary_f32's function codes (ec_kernels_lut.h)
UNARY = {"sigmoid": "EC_UNARY_SIGMOID", "tanh": "EC_UNARY_TANH", "hard_sigmoid": "EC_UNARY_HARD_SIGMOID",
         "hard_swish": "EC_UNARY_HARD_SWISH", "leaky_relu": "EC_UNARY_LEAKY_RELU", "gelu": "EC_UNARY_GELU",
         "gelu_tanh": "EC_UNARY_GELU_TANH", "erf": "EC_UNARY_ERF", "silu": "EC_UNARY_SILU"}


@kernel("ec_lut_s8", "lut", "int8", groups=("lut",))
def emit_lut(gen, L, k) -> str:
    """int8 -> int8 through the node's 256-entry table (indexed by the input byte)."""
    node, x, out = L.node, L.x, L.out
    table = np.asarray(gen.q(node)["table"], np.int8)
    fn = node.attrs.get("fn") or "composed"
    t = gen.const_array(L.base, "table", table, "int8_t", f"{node.name}: {fn}, table[(uint8_t)x]")
    L.head.append(f"  {fn} as a 256-entry table")
    return f"{k.name}({t}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size});"


@kernel("ec_unary_f32", "unary", "float32", groups=("lut",))
def emit_unary(gen, L, k) -> str:
    """A float32 function of each element."""
    node, x, out = L.node, L.x, L.out
    fn = node.attrs["fn"]
    if fn not in UNARY:
        raise UnsupportedError(f"float function {fn!r} in the C backend", where=f"node {node.name!r}",
                               fix=f"Use one of {', '.join(UNARY)}")
    alpha = node.attrs.get("alpha", 0.2 if fn == "hard_sigmoid" else 0.01)
    beta = node.attrs.get("beta", 0.5)
    L.head.append(f"  {fn}")
    return (f"{k.name}({UNARY[fn]}, {c_float(alpha)}, {c_float(beta)}, {gen.tensor(x.name)}, "
            f"{gen.tensor(out.name)}, {out.size});")


@kernel("ec_prelu_s8", "prelu", "int8", groups=("binary",))
@kernel("ec_prelu_f32", "prelu", "float32", groups=("binary",))
def emit_prelu(gen, L, k) -> str:
    """x where x >= 0, else alpha * x (alpha a constant broadcast against x)."""
    node, x, out = L.node, L.x, L.out
    al = gen.g.tensors[node.inputs[1]]
    if not al.is_const:
        raise UnsupportedError("prelu with a non-constant alpha", where=f"node {node.name!r}",
                               fix="Freeze alpha into the model")
    dims, sa, sb = bcast(out.shape, x.shape, al.shape, f"node {node.name!r}")
    init = bcast_init(dims, sa, sb)
    L.head.append(f"  alpha {list(al.shape)}")
    if not L.s8:
        a = gen.const_array(L.base, "alpha", al.data, "float", f"{node.name}: alpha")
        gen.struct("ec_prelu_params_t", L.base, [("bc", init)], c_comment(f"{node.name}: prelu"))
        return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {a}, {gen.tensor(out.name)});"
    q = gen.q(node)
    w = np.asarray(q["alpha"], np.int64)
    off = int(q.get("alpha_offset", 0))
    fields = [(f, c_int(q[f])) for f in ("input_offset", "output_offset", "multiplier_1", "shift_1",
                                         "multiplier_2", "shift_2")]
    if np.all((w - off >= -128) & (w - off <= 127)):  # TFLite's int8 alpha: the bytes and their offset
        a8 = gen.const_array(L.base, "alpha", w - off, "int8_t", f"{node.name}: alpha (int8, offset {off})")
        fields += [("alpha_offset", c_int(off)), ("alpha8", a8), ("alpha16", "NULL")]
    elif np.all(np.abs(w) <= 32767):
        a16 = gen.const_array(L.base, "alpha", w, "int16_t", f"{node.name}: alpha slopes")
        fields += [("alpha_offset", "0"), ("alpha8", "NULL"), ("alpha16", a16)]
    else:
        raise UnsupportedError("prelu slopes beyond 16 bits", where=f"node {node.name!r}")
    gen.struct("ec_prelu_params_t", L.base, fields + [("bc", init)], c_comment(f"{node.name}: prelu"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"
