"""Layers with weights: Conv (conv2d, grouped, depthwise), ConvTranspose (transpose_conv2d),
BatchNormalization (folded into the convolution before it, else a per-channel affine), Gemm /
MatMul with constant weights (fully_connected)."""
from __future__ import annotations

import math

import numpy as np

from ... import ir
from ...errors import UnsupportedError
from .context import Ctx, attrs_of, ir_const, out_tensor, pads, weight
from .layout import Layout, channels_last, groups, onnx_order, to_layout
from .one_d import as_2d, out_1d
from .registry import onnx_op


@onnx_op("Conv")
def lower_conv(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    one_d = len(xs) == 3  # Conv1d: the 2-D convolution with H = 1 (one_d.py)
    if one_d:
        xs, a = as_2d(c, n, a, xs, where, weight=True)
    w = weight(c, n.input[1], where)
    if w.ndim != 4 or len(xs) != 4:
        raise UnsupportedError(f"{w.ndim - 2}-D convolution", where=where, fix="Use 2-D convolutions (Conv2d)")
    x = channels_last(c, x, xs)
    O, Ig, KH, KW = w.shape
    group = a.get("group", 1)
    strides = tuple(a.get("strides", [1, 1]))
    dil = tuple(a.get("dilations", [1, 1]))
    pad = pads(a, xs, (KH, KW), strides, dil, where)
    Cin = xs[1]
    Ho = ir.conv_output_size(xs[2], KH, strides[0], dil[0], pad[0], pad[2])
    Wo = ir.conv_output_size(xs[3], KW, strides[1], dil[1], pad[1], pad[3])
    if group == 1:
        op, perm, qaxis = "conv2d", (0, 2, 3, 1), 0
        attrs = {}
    elif group == Cin and Ig == 1 and O % Cin == 0:
        op, perm, qaxis = "depthwise_conv2d", (1, 2, 3, 0), 3
        attrs = {"depth_multiplier": O // Cin}
    elif Cin % group == 0 and Ig == Cin // group and O % group == 0:  # grouped (ResNeXt, RegNet)
        op, perm, qaxis = "conv2d", (0, 2, 3, 1), 0
        attrs = {"groups": group}
    else:
        raise UnsupportedError(f"convolution with group={group}, {Cin} input channels and weights {list(w.shape)}",
                               where=where, fix="Check the model")
    wname = ir_const(c, n.input[1], perm, qaxis)
    inputs = [x, wname]
    if len(n.input) > 2 and n.input[2]:
        inputs.append(ir_const(c, n.input[2], None, 0))
    o = (out_1d if one_d else out_tensor)(c, n, (xs[0], O, Ho, Wo))
    c.add_node(n.name, op, inputs, [o], stride=strides, dilation=dil, pad=pad, act=(-math.inf, math.inf), **attrs)


@onnx_op("BatchNormalization")
def lower_batchnorm(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """Folded into the float convolution before it; anywhere else a per-channel affine
    y = x * k + (B - mean * k), k = scale / sqrt(var + eps): a 1x1 depthwise convolution."""
    scale, bias, mean, var = (weight(c, i, where).astype(np.float64) for i in n.input[1:5])
    eps = attrs_of(n).get("epsilon", 1e-5)
    if a.get("training_mode", 0) or len([o for o in n.output if o]) > 1:
        raise UnsupportedError("BatchNormalization in training mode", where=where, fix="Export with model.eval()")
    k = scale / np.sqrt(var + eps)
    prod = c.g.producer(x)
    if prod is None or prod.op not in ("conv2d", "depthwise_conv2d") or len(c.g.consumers(x)) != 1 \
            or x in c.g.outputs or c.g.meta.get("qconst", {}).get(prod.inputs[1]) is not None:
        _channel_affine(c, n, x, xs, k, bias - mean * k, where)
        return
    w = c.g.tensors[prod.inputs[1]]
    if prod.op == "conv2d":
        w.data = (w.data * k.reshape(-1, 1, 1, 1)).astype(np.float32)
    else:
        w.data = (w.data * k.reshape(1, 1, 1, -1)).astype(np.float32)
    b = c.g.tensors[prod.inputs[2]].data.astype(np.float64) if len(prod.inputs) > 2 else np.zeros_like(k)
    nb = ((b - mean) * k + bias).astype(np.float32)
    if len(prod.inputs) > 2:
        c.g.tensors[prod.inputs[2]].data = nb
    else:
        prod.inputs.append(c.const(prod.name + "_bias", nb))
    c.alias[n.output[0]] = x
    c.shapes[n.output[0]] = c.shapes.get(n.input[0], ())


def _channel_affine(c: Ctx, n, x: str, xs: tuple, k: np.ndarray, b: np.ndarray, where: str) -> None:
    """y = x * k[ch] + b[ch] along ONNX axis 1 as a depthwise 1x1 convolution on the channels-last
    data (a [N, C] or [N, C, L] tensor viewed as [N, 1, 1, C] / [N, 1, L, C]).  In a quantized graph
    (x dequantized) the weight is int8 +-127 with the per-channel scale |k| / 127 (exact) and the
    bias int32 at s_in * s_w, like any quantized depthwise layer."""
    if len(xs) not in (2, 3, 4) or k.size != xs[1]:
        raise UnsupportedError(f"BatchNormalization of a {len(xs)}-D tensor with {k.size} channels", where=where,
                               fix="Normalize [N, C], [N, C, L] or [N, C, H, W] tensors along C")
    view = tuple(xs) + (1,) * (4 - len(xs)) if len(xs) == 2 else tuple(xs[:2]) + (1,) + tuple(xs[2:3]) \
        if len(xs) == 3 else tuple(xs)
    lay = Layout(view, (0, 2, 3, 1))  # the data channels-last, as a 4-D tensor
    x = to_layout(c, x, xs, lay, shape=lay.memory_shape)
    wname = c.const(f"{n.output[0]}_scale", k.reshape(1, 1, 1, -1).astype(np.float32))
    p = c.g.producer(x)
    if p is not None and p.op == "dequantize":  # quantized: the weights' integer form for fold_qdq
        s = np.where(k != 0, np.abs(k) / 127.0, 1.0 / 127).astype(np.float32)
        q = np.where(k != 0, np.sign(k) * 127, 0).astype(np.int8).reshape(1, 1, 1, -1)
        c.g.meta.setdefault("qconst", {})[wname] = (q, s, np.zeros(s.shape, np.int32), 3)
    bname = c.const(f"{n.output[0]}_shift", b.astype(np.float32))
    o = out_tensor(c, n, xs, layout=lay)
    c.add_node(n.name or f"{n.output[0]}_affine", "depthwise_conv2d", [x, wname, bname], [o], stride=(1, 1),
               dilation=(1, 1), pad=(0, 0, 0, 0), act=(-math.inf, math.inf), depth_multiplier=1)


@onnx_op("Gemm", "MatMul")
def lower_gemm(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    w = weight(c, n.input[1], where)
    if n.op_type == "Gemm":
        if a.get("transA", 0):
            raise UnsupportedError("Gemm with transA=1", where=where)
        if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            if n.input[1] in c.qconsts:
                raise UnsupportedError("quantized Gemm with alpha/beta != 1", where=where)
            w = w * a.get("alpha", 1.0)
        trans = bool(a.get("transB", 0))
    else:
        if w.ndim != 2 or len(xs) != 2:
            raise UnsupportedError("MatMul other than [N,K] x [K,O]", where=where)
        trans = False
    perm = None if trans else (1, 0)
    if w.shape != c.consts[n.input[1]].shape:  # alpha folded
        c.consts[n.input[1]] = w
    wname = ir_const(c, n.input[1], perm, 0)
    wt = c.g.tensors[wname]
    O, I = wt.shape
    L = c.layouts.get(x)
    gs = groups(tuple(xs), L.logical) if L is not None and len(xs) == 2 else None
    if L is not None and (gs is None or gs[0] != [0] or L.perm[0] != 0):
        x, L = onnx_order(c, x, xs), None  # (the batch axis mixed with the features: move the data)
    if L is None and tuple(c.g.tensors[x].shape) != tuple(xs):  # a [1, rows, K] view of [rows, K] rows
        x = onnx_order(c, x, xs)
    if L is not None:  # the features in another order than ONNX's (a flattened NHWC tensor): permute
        # the weight columns to the memory order instead of moving the data
        fdims = L.logical[1:]
        idx = np.arange(int(np.prod(fdims))).reshape(fdims).transpose([p - 1 for p in L.perm[1:]]).reshape(-1)
        wt.data = wt.data[:, idx]
        qc = c.g.meta.get("qconst", {}).get(wname)
        if qc is not None:
            c.g.meta["qconst"][wname] = (qc[0][:, idx], *qc[1:])
    inputs = [x, wname]
    if len(n.input) > 2 and n.input[2]:
        b = c.consts.get(n.input[2])
        if b is None or b.size != O:
            raise UnsupportedError("Gemm bias that is not a constant vector of the output size", where=where)
        if n.op_type == "Gemm" and a.get("beta", 1.0) != 1.0:
            c.consts[n.input[2]] = b * a["beta"]
        inputs.append(ir_const(c, n.input[2], None, 0))
    if len(xs) != 2 or xs[1] != I:
        raise UnsupportedError(f"fully connected input of shape {xs} for weights {O}x{I}", where=where,
                               fix="Flatten the input to [N, features] before the linear layer")
    o = out_tensor(c, n, (xs[0], O))
    c.add_node(n.name, "fully_connected", inputs, [o], act=(-math.inf, math.inf))


@onnx_op("ConvTranspose")
def lower_conv_transpose(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """transpose_conv2d (group 1): the ONNX weights [C_in, C_out, KH, KW] as [O, KH, KW, I]; pads crop
    the scatter, output_padding (or output_shape) extends it at the bottom and right."""
    w = weight(c, n.input[1], where)
    if w.ndim != 4 or len(xs) != 4:
        raise UnsupportedError(f"{w.ndim - 2}-D transpose convolution", where=where,
                               fix="Use 2-D transpose convolutions (ConvTranspose2d)")
    if a.get("group", 1) != 1:
        raise UnsupportedError(f"grouped ConvTranspose (group={a['group']})", where=where,
                               fix="Use group=1 (or Resize followed by a grouped Conv)")
    ci, co, kh, kw = w.shape
    if ci != xs[1]:
        raise UnsupportedError(f"ConvTranspose weights {list(w.shape)} for {xs[1]} input channels", where=where)
    s = tuple(a.get("strides", [1, 1]))
    d = tuple(a.get("dilations", [1, 1]))
    op = tuple(a.get("output_padding", [0, 0]))
    if len(s) != 2 or len(d) != 2 or len(op) != 2 or any(op[i] >= max(s[i], d[i]) or op[i] < 0 for i in (0, 1)):
        raise UnsupportedError(f"ConvTranspose strides {list(s)}, dilations {list(d)}, output_padding {list(op)}",
                               where=where, fix="Check the model (output_padding must be below the stride)")
    eff = ((kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1)
    full = (s[0] * (xs[2] - 1) + op[0] + eff[0], s[1] * (xs[3] - 1) + op[1] + eff[1])
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = tuple(a["output_shape"][-2:]) if "output_shape" in a else (xs[2] * s[0], xs[3] * s[1])
        total = (full[0] - want[0], full[1] - want[1])
        # the ONNX specification's split: SAME_UPPER puts the extra pixel at the end
        begin = tuple(t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total)
        pad = (begin[0], begin[1], total[0] - begin[0], total[1] - begin[1])
    elif auto == "VALID":
        pad = (0, 0, 0, 0)
    else:
        pad = tuple(a.get("pads", [0, 0, 0, 0]))
    if len(pad) != 4 or pad[0] < 0 or pad[1] < 0:
        raise UnsupportedError(f"ConvTranspose padding {list(pad)}", where=where, fix="Check the model")
    ho, wo = full[0] - pad[0] - pad[2], full[1] - pad[1] - pad[3]
    inferred = c.shapes.get(n.output[0])
    if ho < 1 or wo < 1 or (inferred is not None and tuple(inferred) != (xs[0], co, ho, wo)):
        raise UnsupportedError(f"ConvTranspose output {(xs[0], co, ho, wo)} where ONNX's shape inference says "
                               f"{inferred}", where=where, fix="Give explicit pads and output_padding")
    x = channels_last(c, x, xs)
    inputs = [x, ir_const(c, n.input[1], (1, 2, 3, 0), 0)]
    if len(n.input) > 2 and n.input[2]:
        inputs.append(ir_const(c, n.input[2], None, 0))
    o = out_tensor(c, n, (xs[0], co, ho, wo))
    c.add_node(n.name, "transpose_conv2d", inputs, [o], stride=s, dilation=d, pad=pad, act=(-math.inf, math.inf))
