"""max_pool2d and avg_pool2d layers (int8 and float32; int16 in ``int16.py``): the plain kernels
(TFLite's pools), the DSP global average, and the ONNX extras (a dilated max pool, an average that
counts the padding) in ``ec_kernels_pool_ext``."""
from __future__ import annotations

from ....errors import ModelError, UnsupportedError
from ....ops.pool import tflite_window
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from . import mve


def _global_avg_dsp(gen, node) -> bool:
    """A whole-input average with at most 256 values a channel (16-bit sums, SXTAB16)."""
    g = gen.g
    x, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    a = node.attrs
    return gen.dsp and len(x.shape) == 4 and len(out.shape) == 4 and x.shape[3] == out.shape[3] \
        and out.shape[1] == out.shape[2] == 1 and tuple(a["kernel"]) == tuple(x.shape[1:3]) \
        and tuple(a.get("pad", (0, 0, 0, 0))) == (0, 0, 0, 0) and x.shape[1] * x.shape[2] <= 256 \
        and tflite_window(a)


def _ext(gen, node) -> bool:
    return not tflite_window(node.attrs)


def pool_fields(gen, L) -> list[tuple[str, str]]:
    """ec_pool_params_t of a layer (the window geometry and clamp); the window in the comment."""
    node, x, out, head = L.node, L.x, L.out, L.head
    a = node.attrs
    if len(x.shape) != 4 or len(out.shape) != 4 or x.shape[3] != out.shape[3]:
        raise ModelError("pooling tensors must be 4-D NHWC with equal channels", where=f"node {node.name!r}")
    if x.dtype != out.dtype:
        raise UnsupportedError(f"{node.op} from {x.dtype} to {out.dtype}", where=f"node {node.name!r}",
                               fix="Pool in one type (requantize or dequantize after the pool)")
    kh, kw = a["kernel"]
    sh, sw = a.get("stride", (1, 1))
    pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
    lo, hi, flo, fhi = gen.act(node, out)
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("channels", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("kernel_h", kh), ("kernel_w", kw),
              ("stride_h", sh), ("stride_w", sw), ("pad_top", pt), ("pad_left", pl),
              ("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
    head.append(f"  window {kh}x{kw}, stride {sh}x{sw}, pad t{pt} l{pl} b{pb} r{pr}")
    return [(f, str(v)) for f, v in fields]


@kernel("ec_max_pool2d_ext_s8", "max_pool2d", "int8", applies=_ext, groups=("pool_ext",), rank=5)
@kernel("ec_max_pool2d_ext_f32", "max_pool2d", "float32", applies=_ext, groups=("pool_ext",), rank=5)
@kernel("ec_avg_pool2d_ext_s8", "avg_pool2d", "int8", applies=_ext, groups=("pool_ext",), rank=5)
@kernel("ec_avg_pool2d_ext_f32", "avg_pool2d", "float32", applies=_ext, groups=("pool_ext",), rank=5)
def emit_pool_ext(gen, L, k) -> str:
    """A dilated max pool or an average counting the padding: ec_pool_ext_params_t and the call."""
    node, x, out = L.node, L.x, L.out
    a = node.attrs
    window = pool_fields(gen, L)
    dh, dw = a.get("dilation", (1, 1))
    cip = bool(a.get("count_include_pad"))
    _, _, pb, pr = a["divisor_pad"] if cip else (0, 0, 0, 0)
    zp = int(x.quant.zero_point[0]) if L.s8 and cip else 0
    nested = "{\n" + "".join(f"        .{f} = {v},\n" for f, v in window) + "    }"
    fields = [("pool", nested), ("dilation_h", str(dh)), ("dilation_w", str(dw)), ("count_include_pad", str(int(cip))),
              ("pad_bottom", str(pb)), ("pad_right", str(pr)), ("zero_point", str(zp))]
    if (dh, dw) != (1, 1):
        L.head.append(f"  dilation {dh}x{dw}")
    if cip:
        L.head.append(f"  the average counts the padding (to b{pb} r{pr}) as zeros")
    gen.struct("ec_pool_ext_params_t", L.base, fields, c_comment(f"{node.name}: {node.op}"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, {L.row});"


@kernel("ec_avg_pool2d_s8_mve", "avg_pool2d", "int8", applies=mve.marked, groups=mve.GROUPS, rank=mve.RANK)
@kernel("ec_max_pool2d_s8_mve", "max_pool2d", "int8", applies=mve.marked, groups=mve.GROUPS, rank=mve.RANK)
@kernel("ec_global_avg_pool2d_s8_dsp", "avg_pool2d", "int8", applies=_global_avg_dsp, groups=("dsp",), rank=10)
@kernel("ec_avg_pool2d_s8", "avg_pool2d", "int8")
@kernel("ec_avg_pool2d_f32", "avg_pool2d", "float32")
@kernel("ec_max_pool2d_s8", "max_pool2d", "int8")
@kernel("ec_max_pool2d_f32", "max_pool2d", "float32")
def emit_pool(gen, L, k) -> str:
    """A pooling layer: ec_pool_params_t and the call."""
    node = L.node
    if not tflite_window(node.attrs):
        raise AssertionError("dilated pools and averages counting the padding take ec_kernels_pool_ext")
    fields = pool_fields(gen, L)
    gen.struct("ec_pool_params_t", L.base, fields, c_comment(f"{node.name}: {node.op}"))
    if k.name == "ec_global_avg_pool2d_s8_dsp":
        L.head.append("  global average, 4 channels at a time (SXTAB16)")
    elif k.name.endswith("_mve"):
        L.head.append("  Helium kernel (MVE, 16 channels at a time)")
    return f"{k.name}(&{L.base}, {gen.tensor(L.x.name)}, {gen.tensor(L.out.name)}, {L.row});"
