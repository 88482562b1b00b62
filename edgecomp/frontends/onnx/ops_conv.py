"""Layers with weights: Conv (conv2d, depthwise), BatchNormalization (folded into the convolution
before it), Gemm / MatMul with constant weights (fully_connected)."""
from __future__ import annotations

import math

import numpy as np

from ... import ir
from ...errors import UnsupportedError
from .context import Ctx, attrs_of, ir_const, out_tensor, pads, weight
from .layout import channels_last, groups, onnx_order
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
    else:
        raise UnsupportedError(f"grouped convolution (group={group})", where=where,
                               fix="Use group=1 or depthwise (group = input channels)")
    wname = ir_const(c, n.input[1], perm, qaxis)
    inputs = [x, wname]
    if len(n.input) > 2 and n.input[2]:
        inputs.append(ir_const(c, n.input[2], None, 0))
    o = (out_1d if one_d else out_tensor)(c, n, (xs[0], O, Ho, Wo))
    c.add_node(n.name, op, inputs, [o], stride=strides, dilation=dil, pad=pad, act=(-math.inf, math.inf), **attrs)


@onnx_op("BatchNormalization")
def lower_batchnorm(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    scale, bias, mean, var = (weight(c, i, where).astype(np.float64) for i in n.input[1:5])
    eps = attrs_of(n).get("epsilon", 1e-5)
    k = scale / np.sqrt(var + eps)
    prod = c.g.producer(x)
    if prod is None or prod.op not in ("conv2d", "depthwise_conv2d") or len(c.g.consumers(x)) != 1 \
            or x in c.g.outputs or c.g.meta.get("qconst", {}).get(prod.inputs[1]) is not None:
        raise UnsupportedError("BatchNormalization that does not follow a float convolution", where=where,
                               fix="Fold batch-norm into the convolution before export (model.eval())")
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
