"""Numpy reference interpreter of the IR.

int8 graphs are computed exactly as TensorFlow Lite Micro's reference kernels do
(requantization rounding and saturation, average-pool rounding over the in-bounds
window, int8 softmax, add), so results are bit-exact with TFLM on imported
``.tflite`` models.  Nodes with int16 ("16x8") activations run in
:mod:`edgecomp.interp_s16`, exactly as the C kernels ``ec_kernels_s16.c`` do (their
own rounding, add and average pool; not TFLM's int8 ones).  float32 graphs are
computed in float64 per layer and stored as float32 (within ~1e-5 of LiteRT / ONNX Runtime).

Batches: every graph tensor's first axis is the batch; ``run`` takes N samples.
Integer dot products are done in float64 BLAS (exact: all partial sums < 2^53).

Fused residual add (optional, on conv2d / depthwise_conv2d / fully_connected):
``attrs["residual"] = {"tensor": skip, "act": (lo, hi), "q": <add q, see requantize.add_q>}``
and, for int8, ``attrs["conv_out_quant"]`` = the conv's own output QuantParams (or a
{"scale", "zero_point"} dict).  The conv result is computed with the node's own ``act``
and ``q`` (which targets ``conv_out_quant``), rounded to int8, then added to ``skip``
exactly like an ``add`` node with ``residual["q"]`` and clamped to ``residual["act"]``;
the node's output tensor holds the sum.  The skip tensor may also be listed in
``node.inputs`` after the weights/bias (so lifetimes and ``Graph.validate`` see it).
"""
from __future__ import annotations

import numpy as np

from . import interp_s16, ir
from . import numerics as nx
from .errors import ModelError, UnsupportedError
from .im2col import conv_acc
from .im2col import pad as _pad
from .im2col import windows as _windows

CHUNK = 16  # samples per pass: bounds the im2col buffers


def _q(graph: ir.Graph, node: ir.Node) -> dict:
    q = node.attrs.get("q")
    if q is None:
        from .passes.requantize import node_q
        q = node_q(graph, node)
        if q is None:
            raise ModelError("int8 node without quantization parameters", where=f"node {node.name!r}")
    return q


def _is_int(t: ir.Tensor) -> bool:
    return t.dtype != "float32"


def _clamp_cast(v: np.ndarray, act, dtype: str) -> np.ndarray:
    lo, hi = act if act is not None else (None, None)
    info = np.iinfo(ir.np_dtype(dtype))
    lo = info.min if lo is None else max(int(lo), info.min)
    hi = info.max if hi is None else min(int(hi), info.max)
    return np.clip(v, lo, hi).astype(ir.np_dtype(dtype))


def _fclamp(v: np.ndarray, act) -> np.ndarray:
    if act is not None:
        lo, hi = act
        v = np.clip(v, lo, hi)
    return v.astype(np.float32)


def _requant_out(acc: np.ndarray, q: dict, act, dtype: str) -> np.ndarray:
    acc = nx.wrap_int32(acc)
    v = nx.multiply_by_quantized_multiplier(acc, np.asarray(q["multiplier"], np.int64),
                                            np.asarray(q["shift"], np.int64)) + int(q["output_offset"])
    return _clamp_cast(v, act, dtype)


def _bias(graph: ir.Graph, node: ir.Node):
    """The constant third input, if any (a fused residual's skip tensor may follow the inputs)."""
    if len(node.inputs) > 2 and node.inputs[2] and graph.tensors[node.inputs[2]].is_const:
        return graph.tensors[node.inputs[2]].data
    return None


def _conv(graph: ir.Graph, node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    w = graph.tensors[node.inputs[1]].data
    a = node.attrs
    oh, ow = out.shape[1], out.shape[2]
    quant = _is_int(out)
    if quant:
        q = _q(graph, node)
        xo = x.astype(np.float64) + q["input_offset"]
        wf = w.astype(np.float64) + q["filter_offset"]
    elif "hybrid" in a:
        return _hybrid_conv(graph, node, x, out)
    else:
        xo, wf = x.astype(np.float64), w.astype(np.float64)
    acc = conv_acc(xo, wf, node.op, a, (oh, ow))
    return _finish_acc(graph, node, acc, out, quant)


def symmetric_quantize_floats(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """TFLite SymmetricQuantizeFloats of one sample: int8 values in [-127, 127] and the float scale."""
    rng = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    if rng == 0:
        return np.zeros(x.shape, np.int8), np.float32(1)
    inv = np.float32(127) / rng
    q = np.clip(nx.round_half_away(x.astype(np.float32) * inv), -127, 127).astype(np.int8)
    return q, np.float32(rng / np.float32(127))


def _hybrid_conv(graph: ir.Graph, node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    """LiteRT's hybrid conv: input quantized per sample, int8 GEMM, rescaled to float."""
    a = node.attrs
    w = graph.tensors[node.inputs[1]].data
    ws = np.float32(a["hybrid"]["weight_scale"])
    wq = np.rint(w.astype(np.float64) / float(ws)).reshape(w.shape[0], -1)
    b = _bias(graph, node)
    n, oh, ow = x.shape[0], out.shape[1], out.shape[2]
    ys = []
    for s in range(n):
        q, sf = symmetric_quantize_floats(x[s])
        cols = _windows(_pad(q[None].astype(np.float64), a["pad"], 0.0), (w.shape[1], w.shape[2]), a["stride"],
                        a.get("dilation", (1, 1)), (oh, ow))
        cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(oh * ow, -1)
        acc = (cols @ wq.T).astype(np.float32) * np.float32(sf * ws)
        if b is not None:
            acc = acc + b.astype(np.float32)
        ys.append(_fclamp(acc, a.get("act")).reshape(oh, ow, -1))
    return np.stack(ys)


def _finish_acc(graph: ir.Graph, node: ir.Node, acc: np.ndarray, out: ir.Tensor, quant: bool) -> np.ndarray:
    b = _bias(graph, node)
    if quant:
        acc = np.rint(acc).astype(np.int64)
        if b is not None:
            acc = acc + b.astype(np.int64)
        dtype = "int8" if node.attrs.get("residual") else out.dtype
        return _requant_out(acc, _q(graph, node), node.attrs.get("act"), dtype)
    if b is not None:
        acc = acc + b.astype(np.float64)
    return _fclamp(acc, node.attrs.get("act"))


def _fully_connected(graph: ir.Graph, node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    w = graph.tensors[node.inputs[1]].data
    rows = x.reshape(-1, w.shape[1]).astype(np.float64)
    quant = _is_int(out)
    wf = w.astype(np.float64)
    if quant:
        q = _q(graph, node)
        rows = rows + q["input_offset"]
        wf = wf + q["filter_offset"]
    acc = rows @ wf.T
    return _finish_acc(graph, node, acc, out, quant).reshape((x.shape[0],) + out.shape[1:])


def add_int8(a: np.ndarray, b: np.ndarray, q: dict, act, dtype: str = "int8") -> np.ndarray:
    """TFLM reference int8 add (elementwise, same shapes)."""
    ls = 1 << int(q["left_shift"])
    a1 = (a.astype(np.int64) + q["input1_offset"]) * ls
    b1 = (b.astype(np.int64) + q["input2_offset"]) * ls
    sa = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(a1, q["input1_multiplier"], q["input1_shift"])
    sb = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(b1, q["input2_multiplier"], q["input2_shift"])
    raw = nx.multiply_by_quantized_multiplier_smaller_than_one_exp(
        nx.wrap_int32(sa + sb), q["output_multiplier"], q["output_shift"]) + q["output_offset"]
    return _clamp_cast(raw, act, dtype)


def _pool(node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    a = node.attrs
    kh, kw = a["kernel"]
    hw = (out.shape[1], out.shape[2])
    quant = _is_int(out)
    if node.op == "max_pool2d":
        fill = np.iinfo(x.dtype).min if quant else -np.inf
        v = _windows(_pad(x, a["pad"], fill), (kh, kw), a["stride"], (1, 1), hw).max(axis=(4, 5))
        return _clamp_cast(v, a.get("act"), out.dtype) if quant else _fclamp(v, a.get("act"))
    xs = _windows(_pad(x.astype(np.float64), a["pad"], 0.0), (kh, kw), a["stride"], (1, 1), hw).sum(axis=(4, 5))
    ones = np.ones((1,) + x.shape[1:3] + (1,))
    cnt = _windows(_pad(ones, a["pad"], 0.0), (kh, kw), a["stride"], (1, 1), hw).sum(axis=(4, 5))
    if not quant:
        return _fclamp(xs / cnt, a.get("act"))
    acc = np.rint(xs).astype(np.int64)
    c = np.rint(cnt).astype(np.int64)
    num = np.where(acc > 0, acc + c // 2, acc - c // 2)
    v = np.sign(num) * (np.abs(num) // c)  # C division truncates toward zero
    return _clamp_cast(v, a.get("act"), out.dtype)


def _softmax(graph: ir.Graph, node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    if _is_int(out):
        if out.dtype != "int8" or x.dtype != np.int8:
            raise UnsupportedError("softmax other than int8 -> int8", where=f"node {node.name!r}")
        q = _q(graph, node)
        return nx.softmax_int8(x, q["input_multiplier"], q["input_left_shift"], q["diff_min"])
    beta = float(node.attrs.get("beta", 1.0))
    z = (x.astype(np.float64) - x.max(axis=-1, keepdims=True)) * beta
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _quantize(graph: ir.Graph, node: ir.Node, x: np.ndarray, out: ir.Tensor) -> np.ndarray:
    qo = out.quant
    if x.dtype == np.float32:
        return nx.affine_quantize(x, float(qo.scale[0]), int(qo.zero_point[0]), ir.np_dtype(out.dtype))
    q = _q(graph, node)
    v = nx.multiply_by_quantized_multiplier(x.astype(np.int64) + q["input_offset"], q["multiplier"], q["shift"])
    return _clamp_cast(v + q["output_offset"], None, out.dtype)


def _node(graph: ir.Graph, node: ir.Node, env: dict[str, np.ndarray]) -> np.ndarray:
    out = graph.tensors[node.outputs[0]]
    x = env[node.inputs[0]] if node.inputs else None
    op = node.op
    n = x.shape[0]
    if interp_s16.is_s16(graph, node):  # int16 activations: ec_kernels_s16.c semantics
        return interp_s16.run_node(graph, node, env).reshape((n,) + out.shape[1:])
    if op in ("conv2d", "depthwise_conv2d"):
        y = _conv(graph, node, x, out)
    elif op == "fully_connected":
        y = _fully_connected(graph, node, x, out)
    elif op == "add":
        b = env[node.inputs[1]]
        if _is_int(out):
            y = add_int8(x, b, _q(graph, node), node.attrs.get("act"), out.dtype)
        else:
            y = _fclamp(x.astype(np.float64) + b, node.attrs.get("act"))
    elif op in ("max_pool2d", "avg_pool2d"):
        y = _pool(node, x, out)
    elif op == "softmax":
        y = _softmax(graph, node, x, out)
    elif op == "reshape":
        y = x.reshape((n,) + tuple(node.attrs.get("shape", out.shape))[1:])
    elif op == "concat":
        y = np.concatenate([env[i] for i in node.inputs], axis=int(node.attrs["axis"]))
    elif op == "quantize":
        y = _quantize(graph, node, x, out)
    elif op == "dequantize":
        qi = graph.tensors[node.inputs[0]].quant
        y = nx.dequantize(x, float(qi.scale[0]), int(qi.zero_point[0]))
    elif op == "clamp":
        y = _clamp_cast(x, node.attrs.get("act"), out.dtype) if _is_int(out) else _fclamp(x, node.attrs.get("act"))
    else:
        raise UnsupportedError(f"op {op!r} in the reference interpreter", where=f"node {node.name!r}")
    res = node.attrs.get("residual")
    if res:
        skip = env[res["tensor"]]
        if _is_int(out):
            q = res.get("q")
            if q is None:
                from .passes.requantize import residual_q
                q = residual_q(graph, node)
            y = add_int8(y, skip, q, res.get("act"), out.dtype)
        else:
            y = _fclamp(y.astype(np.float64) + skip, res.get("act"))
    return y.reshape((n,) + out.shape[1:])


def _inputs(graph: ir.Graph, inputs) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict):
        if len(graph.inputs) != 1:
            raise ModelError(f"the graph has {len(graph.inputs)} inputs", fix="Pass a dict {name: array}")
        inputs = {graph.inputs[0]: inputs}
    env = {}
    for name in graph.inputs:
        if name not in inputs:
            raise ModelError(f"missing input {name!r}", fix=f"Pass arrays for {graph.inputs}")
        t = graph.tensors[name]
        x = np.asarray(inputs[name])
        if x.shape == t.shape[1:]:
            x = x[None]
        elif x.ndim == len(t.shape) + 1 and x.shape[1:] == t.shape:
            x = x.reshape((-1,) + t.shape[1:])  # [N, 1, ...]: one model-shaped sample per row
        if x.shape[1:] != t.shape[1:]:
            raise ModelError(f"input {name!r} has shape {x.shape}, the model takes [N, {', '.join(map(str, t.shape[1:]))}]",
                             fix="Reshape the input (NHWC layout)")
        want = ir.np_dtype(t.dtype)
        if x.dtype != want:
            if t.dtype != "float32" or not np.issubdtype(x.dtype, np.number):
                raise ModelError(f"input {name!r} is {x.dtype}, the model takes {t.dtype}",
                                 fix="Quantize the input with the input tensor's scale and zero point")
            x = x.astype(np.float32)
        env[name] = x
    return env


def run(graph: ir.Graph, inputs: dict[str, np.ndarray] | np.ndarray, *,
        all_tensors: bool = False) -> dict[str, np.ndarray]:
    """Run the graph on N samples; return {output name: array [N, ...]} (every tensor if all_tensors)."""
    env0 = _inputs(graph, inputs)
    n = next(iter(env0.values())).shape[0]
    consts = {t.name: t.data for t in graph.constants()}
    parts: list[dict[str, np.ndarray]] = []
    for s in range(0, max(n, 1), CHUNK):
        env = {**consts, **{k: v[s:s + CHUNK] for k, v in env0.items()}}
        for node in graph.nodes:
            env[node.outputs[0]] = _node(graph, node, env)
        keep = [k for k in env if k not in consts] if all_tensors else graph.outputs
        parts.append({k: env[k] for k in keep})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
