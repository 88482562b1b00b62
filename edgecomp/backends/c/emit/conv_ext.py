"""transpose_conv2d layers (``ec_kernels_conv_ext``; the grouped convolution's call is in ``conv.py``
beside the other convolutions')."""
from __future__ import annotations

from ....errors import ModelError, UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_int, shape_text

MAX_TAPS = 16  # EC_TCONV_MAX_TAPS: kernel rows and columns a transpose convolution may have


@kernel("ec_transpose_conv2d_s8", "transpose_conv2d", "int8", groups=("conv_ext",))
@kernel("ec_transpose_conv2d_f32", "transpose_conv2d", "float32", groups=("conv_ext",))
def emit_transpose_conv(gen, L, k) -> str:
    """A transpose convolution: ec_conv_params_t (the crop at the top and left as its padding)."""
    node, x, out, head = L.node, L.x, L.out, L.head
    a = node.attrs
    w = gen.g.tensors[node.inputs[1]]
    if len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4 or w.shape[3] != x.shape[3] \
            or w.shape[0] != out.shape[3]:
        raise ModelError(f"transpose convolution weights {shape_text(w.shape)} do not match input "
                         f"{shape_text(x.shape)} and output {shape_text(out.shape)}", where=f"node {node.name!r}")
    if w.shape[1] > MAX_TAPS or w.shape[2] > MAX_TAPS:
        raise UnsupportedError(f"a {w.shape[1]}x{w.shape[2]} transpose convolution kernel", where=f"node {node.name!r}",
                               fix=f"Use kernels of at most {MAX_TAPS}x{MAX_TAPS}")
    if a.get("residual"):
        raise UnsupportedError("a residual add fused into a transpose convolution", where=f"node {node.name!r}")
    sh, sw = a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    pt, pl = a["pad"][0], a["pad"][1]
    lo, hi, flo, fhi = gen.act(node, out)
    fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("in_c", x.shape[3]),
              ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("out_c", out.shape[3]),
              ("kernel_h", w.shape[1]), ("kernel_w", w.shape[2]), ("stride_h", sh), ("stride_w", sw),
              ("dilation_h", dh), ("dilation_w", dw), ("pad_top", pt), ("pad_left", pl), ("depth_multiplier", 1)]
    filt = gen.const(node, 1, "filter", "int8_t" if L.s8 else "float")
    bias = gen.const(node, 2, "bias", "int32_t" if L.s8 else "float") or "NULL"
    if L.s8:
        q = gen.q(node)
        if int(q["filter_offset"]) != 0:
            raise UnsupportedError("an int8 transpose convolution with asymmetric weights", where=f"node {node.name!r}",
                                   fix="Quantize the weights symmetrically (TFLite int8 spec)")
        mi, si = gen.mult_shift(node, out.shape[3])
        fields += [("input_offset", c_int(q["input_offset"])), ("filter_offset", "0"),
                   ("output_offset", c_int(q["output_offset"]))]
    fields += [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
    if L.s8:
        fields += [("multiplier", mi), ("shift", si)]
    head.append(f"  kernel {w.shape[1]}x{w.shape[2]}, stride {sh}x{sw}, dilation {dh}x{dw}, output cropped at "
                f"top {pt} left {pl}, act [{lo if L.s8 else flo}, {hi if L.s8 else fhi}]")
    gen.struct("ec_conv_params_t", L.base, [(f, str(v)) for f, v in fields], c_comment(f"{node.name}: {node.op}"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {filt}, {bias}, {gen.tensor(out.name)});"
