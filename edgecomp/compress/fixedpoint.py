"""Fixed point: power-of-two scales on a QDQ model, int8 (Q7-style) or int16 (Q15-style).

:func:`to_power_of_two` rewrites every scale of a QDQ ONNX model (from
``quantize_onnx`` or QAT) to a power of two, re-quantizing the stored int8 weights
and int32 biases to the new scales (bias scale = input scale x weight scale stays
exact), so requantization becomes a pure shift - the scheme for cores without a
fast multiplier (Cortex-M0).  ``rounding="ceil"`` (default) rounds scales up, so
no value saturates (up to 1 bit of resolution lost); ``"nearest"`` rounds in the
log domain.  Accuracy is measured with ONNX Runtime on the rewritten model.

Scope: int8 activations (Q7, from ``quantize_onnx``) and int16 activations (Q15, from
``quantize_onnx(..., activations="int16")``: symmetric int16 activations, int8 weights);
only the scales change, zero points and integer types stay.  In the C backend the int16
layers of a rewritten model are shift-only (``ec_kernels_s16``: every multiplier is 2^30,
so no multiplier array is stored and no multiply is done); int8 layers still run the
normal int8 kernels (multiplier 2^30, shift n), which give the same numbers as a shift.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["to_power_of_two", "pow2", "fixedpoint_report"]


def pow2(s: np.ndarray, rounding: str = "ceil") -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if np.any(s <= 0):
        raise ModelError("a quantization scale is not positive", "fixed-point rewrite", "Re-quantize the model")
    e = np.log2(s)
    e = np.ceil(e - 1e-9) if rounding == "ceil" else np.round(e)
    return np.power(2.0, e).astype(np.float32)


def to_power_of_two(qdq_path: str | Path, out_path: str | Path, *, rounding: str = "ceil") -> dict:
    """Rewrite ``qdq_path`` with power-of-two scales into ``out_path``; returns a summary."""
    import onnx
    from onnx import numpy_helper as nh

    if rounding not in ("ceil", "nearest"):
        raise ModelError(f"unknown rounding {rounding!r}", "to_power_of_two", "Use 'ceil' or 'nearest'")
    model = onnx.load(str(qdq_path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    qnodes = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qnodes:
        raise ModelError("the model has no QuantizeLinear/DequantizeLinear nodes", str(qdq_path),
                         "Give a QDQ int8/int16 model (edgecomp.compress.quantize.quantize_onnx writes one)")
    old = {}  # scale initializer name -> old float scale
    for n in qnodes:
        sname = n.input[1]
        if sname in inits and sname not in old:
            old[sname] = nh.to_array(inits[sname]).astype(np.float32)

    def is_bias(n):
        return n.op_type == "DequantizeLinear" and n.input[0] in inits and \
            nh.to_array(inits[n.input[0]]).dtype == np.int32

    bias_scales = {n.input[1] for n in qnodes if is_bias(n)}
    new = {k: pow2(v, rounding) for k, v in old.items() if k not in bias_scales}

    def src_scale(tensor):
        p = producer.get(tensor)
        return new.get(p.input[1]) if p is not None and p.op_type == "DequantizeLinear" else None

    replaced_w = replaced_b = 0
    for n in qnodes:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        q = nh.to_array(inits[n.input[0]])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        s_old = old[n.input[1]]
        zp = nh.to_array(inits[n.input[2]]).astype(np.int64) if len(n.input) > 2 and n.input[2] in inits else 0
        if is_bias(n):
            user = consumers.get(n.output[0], [None])[0]
            if user is None or len(user.input) < 2:
                continue
            s_in, s_w = src_scale(user.input[0]), src_scale(user.input[1])
            if s_in is None or s_w is None:
                continue
            s_new = (np.float64(s_in) * s_w.astype(np.float64)).astype(np.float32)
            new[n.input[1]] = s_new.reshape(s_old.shape) if s_new.size == s_old.size else s_new
            vals = np.round(q.astype(np.float64) * s_old / new[n.input[1]])
            info = np.iinfo(np.int32)
            inits[n.input[0]].CopyFrom(nh.from_array(np.clip(vals, info.min, info.max).astype(np.int32), n.input[0]))
            replaced_b += 1
        else:
            s_new = new[n.input[1]]
            shape = [1] * q.ndim
            if s_old.size > 1:
                shape[axis] = -1
            if np.ndim(zp) and np.size(zp) > 1:
                zp = zp.reshape(shape)
            f = (q.astype(np.float64) - zp) * s_old.reshape(shape)
            info = np.iinfo(q.dtype)
            lo = -info.max if q.dtype == np.int8 else info.min
            vals = np.clip(np.round(f / s_new.reshape(shape)) + zp, lo, info.max).astype(q.dtype)
            inits[n.input[0]].CopyFrom(nh.from_array(vals, n.input[0]))
            replaced_w += 1
    for name, s in new.items():
        inits[name].CopyFrom(nh.from_array(np.asarray(s, dtype=np.float32).reshape(old[name].shape), name))
    out_path = Path(out_path)
    onnx.save(model, str(out_path))
    exps = np.concatenate([np.log2(np.asarray(s, dtype=np.float64)).ravel() for s in new.values()])
    return {"path": str(out_path), "scales": len(new), "weights_requantized": replaced_w,
            "biases_requantized": replaced_b, "all_power_of_two": bool(np.allclose(exps, np.round(exps))),
            "rounding": rounding}


def fixedpoint_report(qdq_path, x, y, work_dir, *, roundings=("ceil", "nearest")) -> list[dict]:
    """Accuracy of the int8 model and of its power-of-two rewrites (ONNX Runtime)."""
    from .report import onnx_predict
    rows = [{"model": "int8 (float scales)",
             "accuracy": float((onnx_predict(qdq_path, x).argmax(1) == y).mean())}]
    for r in roundings:
        p = Path(work_dir) / f"model.pow2-{r}.onnx"
        info = to_power_of_two(qdq_path, p, rounding=r)
        rows.append({"model": f"Q7 power-of-two scales ({r})", "path": str(p),
                     "accuracy": float((onnx_predict(p, x).argmax(1) == y).mean()), **info})
    return rows
