"""Elementwise layers: add, softmax, clamp, quantize (float -> int8, int8 -> int8), dequantize."""
from __future__ import annotations

from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_float, c_int
from . import mve


@kernel("ec_add_s8_mve", "add", "int8", applies=mve.marked, groups=mve.GROUPS, rank=mve.RANK)
@kernel("ec_add_s8", "add", "int8")
@kernel("ec_add_f32", "add", "float32")
def emit_add(gen, L, k) -> str:
    """Two tensors of one shape, added (TFLM's int8 add: both rescaled, summed, requantized)."""
    node, x, out = L.node, L.x, L.out
    b = gen.g.tensors[node.inputs[1]]
    if b.shape != x.shape or x.size != out.size:
        raise UnsupportedError("add with broadcasting", where=f"node {node.name!r}",
                               fix="Give both inputs the same shape")
    q = gen.q(node) if L.s8 else None
    gen.struct("ec_add_params_t", L.base, gen.add_fields(q, node, out, None), c_comment(f"{node.name}: add"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(b.name)}, {gen.tensor(out.name)}, {out.size});"


@kernel("ec_softmax_s8", "softmax", "int8")
@kernel("ec_softmax_f32", "softmax", "float32")
def emit_softmax(gen, L, k) -> str:
    """Softmax over the last axis (TFLM's int8 softmax: output scale 1/256, zero point -128)."""
    node, x, out = L.node, L.x, L.out
    depth = out.shape[-1]
    if L.s8:
        q = gen.q(node)
        if x.dtype != "int8":
            raise UnsupportedError("softmax other than int8 -> int8", where=f"node {node.name!r}")
        fields = [("rows", str(out.size // depth)), ("depth", str(depth)),
                  ("input_multiplier", c_int(q["input_multiplier"])),
                  ("input_left_shift", c_int(q["input_left_shift"])), ("diff_min", c_int(q["diff_min"])),
                  ("beta", "0.0f")]
    else:
        fields = [("rows", str(out.size // depth)), ("depth", str(depth)),
                  ("beta", c_float(node.attrs.get("beta", 1.0)))]
    L.head.append(f"  beta {node.attrs.get('beta', 1.0)}")
    gen.struct("ec_softmax_params_t", L.base, fields, c_comment(f"{node.name}: softmax"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"


@kernel("ec_clamp_s8", "clamp", "int8")
@kernel("ec_clamp_f32", "clamp", "float32")
def emit_clamp(gen, L, k) -> str:
    """Values clamped to [lo, hi] (a Relu, Relu6 or Clip that is not fused into its producer)."""
    lo, hi, flo, fhi = gen.act(L.node, L.out)
    bounds = f"{lo}, {hi}" if L.s8 else f"{flo}, {fhi}"
    return f"{k.name}({gen.tensor(L.x.name)}, {gen.tensor(L.out.name)}, {L.out.size}, {bounds});"


def _from(dtype: str):
    return lambda gen, n: gen.g.tensors[n.inputs[0]].dtype == dtype and gen.g.tensors[n.outputs[0]].dtype == "int8"


@kernel("ec_quantize_f32_s8", "quantize", "int8", applies=_from("float32"), rank=10)
@kernel("ec_requantize_s8", "quantize", "int8", applies=_from("int8"), rank=20)
def emit_quantize(gen, L, k) -> str:
    """float -> int8 (round half away from zero, as TFLite's Quantize) or int8 -> int8 (requantize)."""
    x, out = L.x, L.out
    if k.name == "ec_quantize_f32_s8":
        qo = out.quant
        return (f"ec_quantize_f32_s8({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, "
                f"{c_float(qo.scale[0])}, {int(qo.zero_point[0])});")
    q = gen.q(L.node)
    return (f"ec_requantize_s8({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, "
            f"{c_int(q['input_offset'])}, {c_int(q['multiplier'])}, {c_int(q['shift'])}, "
            f"{c_int(q['output_offset'])});")


@kernel("ec_dequantize_s8_f32", "dequantize", "int8",
        applies=lambda gen, n: gen.g.tensors[n.inputs[0]].dtype == "int8"
        and gen.g.tensors[n.outputs[0]].dtype == "float32")
def emit_dequantize(gen, L, k) -> str:
    """int8 -> float: scale * (q - zero point)."""
    x, out = L.x, L.out
    qi = x.quant
    return (f"ec_dequantize_s8_f32({gen.tensor(x.name)}, {gen.tensor(out.name)}, {out.size}, "
            f"{c_float(qi.scale[0])}, {int(qi.zero_point[0])});")
