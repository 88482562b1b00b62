"""max_pool2d and avg_pool2d layers (int8 and float32; int16 in ``int16.py``)."""
from __future__ import annotations

from ....errors import ModelError, UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel


def _global_avg_dsp(gen, node) -> bool:
    """A whole-input average with at most 256 values a channel (16-bit sums, SXTAB16)."""
    g = gen.g
    x, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    a = node.attrs
    return gen.dsp and len(x.shape) == 4 and len(out.shape) == 4 and x.shape[3] == out.shape[3] \
        and out.shape[1] == out.shape[2] == 1 and tuple(a["kernel"]) == tuple(x.shape[1:3]) \
        and tuple(a.get("pad", (0, 0, 0, 0))) == (0, 0, 0, 0) and x.shape[1] * x.shape[2] <= 256


@kernel("ec_global_avg_pool2d_s8_dsp", "avg_pool2d", "int8", applies=_global_avg_dsp, groups=("dsp",), rank=10)
@kernel("ec_avg_pool2d_s8", "avg_pool2d", "int8")
@kernel("ec_avg_pool2d_f32", "avg_pool2d", "float32")
@kernel("ec_max_pool2d_s8", "max_pool2d", "int8")
@kernel("ec_max_pool2d_f32", "max_pool2d", "float32")
def emit_pool(gen, L, k) -> str:
    """A pooling layer: ec_pool_params_t and the call."""
    node, x, out, head, row = L.node, L.x, L.out, L.head, L.row
    a = node.attrs
    s8 = out.dtype == "int8"
    if len(x.shape) != 4 or len(out.shape) != 4 or x.shape[3] != out.shape[3]:
        raise ModelError("pooling tensors must be 4-D NHWC with equal channels", where=f"node {node.name!r}")
    kh, kw = a["kernel"]
    sh, sw = a.get("stride", (1, 1))
    pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
    lo, hi, flo, fhi = gen.act(node, out)
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("channels", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("kernel_h", kh), ("kernel_w", kw),
              ("stride_h", sh), ("stride_w", sw), ("pad_top", pt), ("pad_left", pl),
              ("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
    head.append(f"  window {kh}x{kw}, stride {sh}x{sw}, pad t{pt} l{pl} b{pb} r{pr}")
    gen.struct("ec_pool_params_t", L.base, [(f, str(v)) for f, v in fields], c_comment(f"{node.name}: {node.op}"))
    if k.name == "ec_global_avg_pool2d_s8_dsp":
        head.append("  global average, 4 channels at a time (SXTAB16)")
    if s8 != ("_s8" in k.name):
        raise UnsupportedError(f"{node.op} from {x.dtype} to {out.dtype}", where=f"node {node.name!r}",
                               fix="Pool in one type (requantize or dequantize after the pool)")
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, {row});"
