"""Weights below 8 bits that the firmware really stores: int4 (or 2..7-bit) and clustered layers.

The int8 QDQ model from ONNX Runtime stays the reference.  :func:`rewrite` re-quantizes chosen
Conv / Gemm layers in it:

* ``{"bits": b}`` (b < 8): per output channel symmetric on the b-bit grid (scale max|w| / (2^(b-1) - 1),
  values in [-(2^(b-1) - 1), 2^(b-1) - 1]), the int32 bias re-quantized to the new scales (bias scale
  = input scale x weight scale stays exact), like TFLite's int4 weights;
* ``{"clusters": k}``: weight sharing: 1-D k-means over the layer's int8 values (per-channel scales
  make them comparable), each weight replaced by its centroid (rounded to an integer): at most ``k``
  values, stored as ceil(log2 k)-bit indices plus a k-entry codebook.

The rewritten file is still an int8 QDQ model (ONNX Runtime scores it exactly as the firmware
computes it) and :func:`rewrite` returns the *weight plan* {ONNX node: {"bits", "codebook"}} that
:func:`compile_lowbit` marks on the IR (``attrs["packed_weights"]``) so the C backend stores those
filters packed (``backends/c/emit/int4.py``, ``ec_kernels_s4``).  :func:`layer_bytes` is the byte
model mixed precision plans with: what the emitter writes for a layer.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["layer_bytes", "weighted_layers", "rewrite", "cluster_values", "compile_lowbit", "CONST_BYTES"]

#: Flash per output channel besides the weights in an int8 or packed layer: int32 bias, int32
#: multiplier, int8 shift.
CONST_BYTES = 9


def layer_bytes(out_ch: int, taps: int, bits: int, clusters: int = 0) -> int:
    """Flash bytes of one layer's constants for a precision choice: packed b-bit rows (+ codebook),
    int8 weights, or float32 weights and bias (``bits`` 16 and 32: a layer kept in float)."""
    if bits >= 16:
        return 4 * out_ch * taps + 4 * out_ch
    if bits == 8 and not clusters:
        return out_ch * taps + CONST_BYTES * out_ch
    b = max(1, math.ceil(math.log2(clusters))) if clusters else bits
    return out_ch * math.ceil(taps * b / 8) + (clusters if clusters else 0) + CONST_BYTES * out_ch


def weighted_layers(qdq_path) -> dict[str, dict]:
    """{ONNX node name: {op, out, taps, weight (init name), scale, bias, bias_scale}} of every quantized
    Conv / Gemm (weights behind a DequantizeLinear of an int8 initializer)."""
    import onnx
    from onnx import numpy_helper as nh
    m = onnx.load(str(qdq_path))
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2:
            continue
        dq = producer.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        w = nh.to_array(inits[dq.input[0]])
        if w.dtype != np.int8:
            continue
        if n.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in n.attribute):
            continue  # weights [I, O]: not the layout the per-channel rewrite expects
        bdq = producer.get(n.input[2]) if len(n.input) > 2 else None
        bias = bdq.input[0] if bdq is not None and bdq.op_type == "DequantizeLinear" and bdq.input[0] in inits else None
        out[n.name] = {"op": n.op_type, "out": int(w.shape[0]), "taps": int(np.prod(w.shape[1:])),
                       "weight": dq.input[0], "scale": dq.input[1], "bias": bias,
                       "bias_scale": bdq.input[1] if bias else None}
    return out


def cluster_values(q: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(codebook, clustered) for int8 values ``q``: weighted 1-D k-means over the distinct values
    (Lloyd's algorithm from quantile starts), centroids rounded to integers."""
    vals, counts = np.unique(q.astype(np.int64), return_counts=True)
    if len(vals) <= k:
        return vals.astype(np.int8), q.astype(np.int8)
    from sklearn.cluster import KMeans
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(vals.reshape(-1, 1).astype(np.float64),
                                                              sample_weight=counts)
    cb = np.unique(np.clip(np.round(km.cluster_centers_.ravel()), -127, 127).astype(np.int64))
    nearest = cb[np.abs(vals[:, None] - cb[None, :]).argmin(1)]
    lut = dict(zip(vals.tolist(), nearest.tolist()))
    new = np.vectorize(lut.get, otypes=[np.int64])(q.astype(np.int64))
    cb = np.unique(new)
    return cb.astype(np.int8), new.astype(np.int8)


def rewrite(qdq_path, out_path, plan: dict[str, dict]) -> dict[str, dict]:
    """Re-quantize the layers of ``plan`` ({ONNX node: {"bits": b} or {"clusters": k}}) in a QDQ
    model; write ``out_path``; return the weight plan {node: {"bits", "codebook"}} for the compiler."""
    import onnx
    from onnx import numpy_helper as nh
    layers = weighted_layers(qdq_path)
    m = onnx.load(str(qdq_path))
    inits = {i.name: i for i in m.graph.initializer}
    wplan: dict[str, dict] = {}
    for node, want in plan.items():
        if node not in layers:
            raise ModelError(f"no quantized Conv/Gemm layer named {node!r}", str(qdq_path),
                             f"Quantized layers: {', '.join(sorted(layers))}")
        L = layers[node]
        q = nh.to_array(inits[L["weight"]]).astype(np.int64)
        if "clusters" in want:
            k = int(want["clusters"])
            if not 2 <= k <= 128:
                raise ModelError(f"{k} clusters", node, "Use 2 to 128 clusters (16-64 typical)")
            cb, new = cluster_values(q, k)
            inits[L["weight"]].CopyFrom(nh.from_array(new.reshape(q.shape).astype(np.int8), L["weight"]))
            bits = max(1, math.ceil(math.log2(len(cb))))
            wplan[node] = {"bits": bits, "codebook": [int(v) for v in cb]}
            continue
        bits = int(want["bits"])
        if not 2 <= bits <= 7:
            raise ModelError(f"{bits}-bit weights", node, "Use 2 to 7 bits (8 is plain int8)")
        qmax = (1 << (bits - 1)) - 1
        s_old = nh.to_array(inits[L["scale"]]).astype(np.float64).reshape(-1)
        s_b = np.broadcast_to(s_old, (q.shape[0],)).reshape([-1] + [1] * (q.ndim - 1))
        w = q * s_b
        amax = np.abs(w).reshape(q.shape[0], -1).max(1)
        s_new = np.where(amax > 0, amax / qmax, np.broadcast_to(s_old, amax.shape)).astype(np.float32)
        q_new = np.clip(np.round(w / s_new.astype(np.float64).reshape(s_b.shape)), -qmax, qmax).astype(np.int8)
        inits[L["weight"]].CopyFrom(nh.from_array(q_new, L["weight"]))
        inits[L["scale"]].CopyFrom(nh.from_array(s_new.reshape(nh.to_array(inits[L["scale"]]).shape)
                                                 if s_old.size == s_new.size else s_new, L["scale"]))
        if L["bias"] is not None:
            b = nh.to_array(inits[L["bias"]]).astype(np.float64)
            bs_old = nh.to_array(inits[L["bias_scale"]]).astype(np.float64).reshape(-1)
            s_in = bs_old / np.broadcast_to(s_old, bs_old.shape)  # bias scale = input scale x weight scale
            bs_new = (s_in * s_new.astype(np.float64)).astype(np.float32)
            info = np.iinfo(np.int32)
            b_new = np.clip(np.round(b * bs_old / bs_new.astype(np.float64)), info.min, info.max).astype(np.int32)
            inits[L["bias"]].CopyFrom(nh.from_array(b_new, L["bias"]))
            inits[L["bias_scale"]].CopyFrom(nh.from_array(bs_new, L["bias_scale"]))
        wplan[node] = {"bits": bits, "codebook": None}
    onnx.save(m, str(out_path))
    return wplan


def compile_lowbit(onnx_path: Path, target: str, out_dir: Path, weight_plan: dict[str, dict],
                   options: dict | None = None) -> dict:
    """Compile a (rewritten) QDQ model with its weight plan marked on the IR; returns the manifest."""
    from ..pipeline import compile_c, import_model
    from ..targets import load_target
    g = import_model(Path(onnx_path), name=Path(onnx_path).stem.split(".")[0])
    nodes = {n.name: n for n in g.nodes}
    for name, pw in weight_plan.items():
        if name not in nodes or nodes[name].op not in ("conv2d", "fully_connected"):
            raise ModelError(f"the weight plan names {name!r}, which is not a convolution or fully connected "
                             "layer of the compiled graph", str(onnx_path), "Rewrite the model again")
        nodes[name].attrs["packed_weights"] = {"bits": int(pw["bits"]), "codebook": pw.get("codebook")}
    opts = {"precision": "int8", "calibrate_method": "minmax", "per_channel": True,
            "packed_weights": sorted(f"{k}:{v['bits']}{'c' if v.get('codebook') else ''}"
                                     for k, v in weight_plan.items()), **(options or {})}
    return compile_c(g, load_target(target), Path(out_dir), opts)
