"""Constants and QDQ: Constant, Identity / Dropout (aliases), DequantizeLinear (a constant's
integer form is kept for folding; an activation's becomes an IR dequantize), QuantizeLinear."""
from __future__ import annotations

import numpy as np

from ... import ir
from ...errors import ModelError, UnsupportedError
from .context import Ctx, like_input, shape_of
from .load import to_array
from .registry import onnx_op


@onnx_op("Constant", activation=False)
def lower_constant(c: Ctx, n, a: dict, where: str) -> None:
    c.consts[n.output[0]] = to_array(a["value"], where) if "value" in a else np.array(
        a.get("value_float", a.get("value_int", 0)))
    return


@onnx_op("Identity", "Dropout", activation=False)
def lower_identity(c: Ctx, n, a: dict, where: str) -> None:
    ins = list(n.input)
    src = ins[0]
    if src in c.consts:
        c.consts[n.output[0]] = c.consts[src]
        if src in c.qconsts:
            c.qconsts[n.output[0]] = c.qconsts[src]
    else:
        c.alias[n.output[0]] = c.name(src)
        c.shapes[n.output[0]] = shape_of(c, src)
    return


@onnx_op("DequantizeLinear", activation=False)
def lower_dequantize(c: Ctx, n, a: dict, where: str) -> None:
    ins = list(n.input)
    scale = c.consts.get(ins[1])
    zp = c.consts.get(ins[2]) if len(ins) > 2 and ins[2] else np.zeros((), np.int8)
    if scale is None:
        raise UnsupportedError("DequantizeLinear with a non-constant scale", where=where)
    check_scale(scale, where)
    axis = a.get("axis", 1) if scale.size > 1 else None
    if ins[0] in c.consts:  # quantized constant: keep both forms
        q = c.consts[ins[0]]
        shp = [1] * q.ndim
        if axis is not None:
            shp[axis] = -1
        f = (q.astype(np.float64) - zp.astype(np.float64).reshape(shp)) * scale.astype(np.float64).reshape(shp)
        c.consts[n.output[0]] = f.astype(np.float32)
        c.qconsts[n.output[0]] = (q, scale.astype(np.float32), zp.astype(np.int32), axis)
        return
    if scale.size > 1:
        raise UnsupportedError("per-channel quantized activations", where=where,
                               fix="Quantize activations per tensor")
    src = c.name(ins[0])
    qp = ir.QuantParams(scale, zp.astype(np.int32))
    st = c.g.tensors[src]
    if st.quant is None:
        st.quant = qp
    o = like_input(c, n, src, shape_of(c, ins[0]))
    c.add_node(n.name, "dequantize", [src], [o])
    return


@onnx_op("QuantizeLinear", activation=False)
def lower_quantize(c: Ctx, n, a: dict, where: str) -> None:
    ins = list(n.input)
    scale = c.consts.get(ins[1])
    zp = c.consts.get(ins[2]) if len(ins) > 2 and ins[2] else np.zeros((), np.uint8)
    if scale is None or scale.size != 1:
        raise UnsupportedError("QuantizeLinear needs a constant per-tensor scale", where=where)
    check_scale(scale, where)
    if zp.dtype not in (np.int8, np.int16):
        raise UnsupportedError(f"{zp.dtype} quantization (edgecomp's int8 scheme is signed)", where=where,
                               fix="Quantize with QuantType.QInt8 for activations and weights (S8S8), "
                                   "or QInt16 activations (16x8)")
    if zp.dtype == np.int16 and np.any(zp != 0):
        raise UnsupportedError("asymmetric int16 activations", where=where,
                               fix="Quantize int16 activations symmetrically (ActivationSymmetric=True)")
    if ins[0] in c.consts:
        raise UnsupportedError("QuantizeLinear of a constant", where=where)
    src = c.name(ins[0])
    o = like_input(c, n, src, shape_of(c, ins[0]), "int16" if zp.dtype == np.int16 else "int8",
                   ir.QuantParams(scale, zp.astype(np.int32)))
    c.add_node(n.name, "quantize", [src], [o])
    return


def check_scale(scale: np.ndarray, where: str) -> None:
    """A quantization scale is a positive, finite, sane float (every kernel divides by it)."""
    s = np.asarray(scale)
    if s.dtype.kind != "f" or s.size == 0:
        raise ModelError(f"quantization scale of type {s.dtype}", where=where, fix="Use float32 scales")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(s < 1e-30) or np.any(s > 1e30):
        bad = s[~(np.isfinite(s) & (s > 1e-30) & (s <= 1e30))]
        raise ModelError(f"quantization scale {float(bad.reshape(-1)[0]):g} is not a positive, finite number",
                         where=where, fix="Quantize the model again (calibration data with NaN, infinite or "
                                          "constant values gives such scales)")
