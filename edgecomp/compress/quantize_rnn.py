"""QDQ pairs around the recurrent layers, which ONNX Runtime's static quantizer leaves in float.

:func:`add_recurrent_qdq` calibrates each LSTM / GRU's input X and used output (Y or Y_h) on the
calibration samples (ONNX Runtime on the float model, min / max as ORT's MinMax calibrator) and
puts QuantizeLinear -> DequantizeLinear (int8, asymmetric, ORT's formula) on them.  The QDQ graph
still runs in ONNX Runtime as written (the float LSTM between the pairs: the reference the integer
layer is compared with); edgecomp's QDQ folding (``passes.qdq_recurrent``) makes them int8 layers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

RECURRENT = ("LSTM", "GRU")
MOVES = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")


def _qparams(lo: float, hi: float) -> tuple[np.float32, np.int8]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
    zp = int(np.clip(np.round(-128 - lo / float(scale)), -128, 127))
    return scale, np.int8(zp)


def _ranges(float_path: Path, names: list[str], input_name: str, samples: list[np.ndarray]) -> dict:
    import onnxruntime as ort

    m = onnx.load(str(float_path))
    have = {o.name for o in m.graph.output}
    for nm in names:
        if nm not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(nm))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    lo = {nm: np.inf for nm in names}
    hi = {nm: -np.inf for nm in names}
    for s in samples:
        outs = sess.run(names, {input_name: s})
        for nm, v in zip(names, outs):
            lo[nm] = min(lo[nm], float(np.min(v)))
            hi[nm] = max(hi[nm], float(np.max(v)))
    return {nm: (lo[nm], hi[nm]) for nm in names}


def add_recurrent_qdq(float_path: str | Path, qdq_path: str | Path, input_name: str,
                      samples: list[np.ndarray]) -> int:
    """Put calibrated int8 QDQ pairs on the recurrent layers of the QDQ model at ``qdq_path``
    (rewritten in place); return how many layers got them."""
    model = onnx.load(str(qdq_path))
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    todo: list[tuple[onnx.NodeProto, int, str]] = []  # (node, input index or -1 - output index, tensor)
    for n in g.node:
        if n.op_type not in RECURRENT:
            continue
        src, p = n.input[0], producers.get(n.input[0])
        while p is not None and p.op_type in MOVES and consumers.get(p.output[0], 0) == 1:
            src, p = p.input[0], producers.get(p.input[0])  # quantize before the data moves (they commute)
        if p is None or p.op_type != "DequantizeLinear":
            todo.append((n, 0, src))
        for k, o in enumerate(n.output[:2]):
            if o and o in used:
                todo.append((n, -1 - k, o))
    if not todo:
        return 0
    outs = {t for _, k, t in todo if k < 0}  # a layer's output feeding the next layer (stacked LSTMs):
    todo = [(n, k, t) for n, k, t in todo if k < 0 or t not in outs]  # its pair serves both
    ranges = _ranges(Path(float_path), sorted({t for _, _, t in todo}), input_name, samples)
    new_nodes: dict[int, list] = {}
    for n, k, t in todo:
        scale, zp = _qparams(*ranges[t])
        base = f"{t}_rnn"
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), base + "_scale"),
                              numpy_helper.from_array(np.array(zp, np.int8), base + "_zero_point")])
        if k >= 0:  # the layer's input (or the tensor it is moved from): X -> Q -> DQ -> its consumer
            q = helper.make_node("QuantizeLinear", [t, base + "_scale", base + "_zero_point"], [base + "_q"],
                                 name=base + "_QuantizeLinear")
            dq = helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero_point"],
                                  [base + "_dq"], name=base + "_DequantizeLinear")
            first = next(m for m in g.node if t in m.input and (m is n or m.op_type in MOVES))
            for j, i in enumerate(first.input):
                if i == t:
                    first.input[j] = base + "_dq"
            new_nodes.setdefault(id(first), [[], []])[0].extend([q, dq])
        else:  # an output: layer -> Q -> DQ -> (the output's old name) -> consumers
            idx = -1 - k
            n.output[idx] = base + "_f"
            q = helper.make_node("QuantizeLinear", [base + "_f", base + "_scale", base + "_zero_point"],
                                 [base + "_q"], name=base + "_QuantizeLinear")
            dq = helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero_point"], [t],
                                  name=base + "_DequantizeLinear")
            new_nodes.setdefault(id(n), [[], []])[1].extend([q, dq])
    nodes = []
    for n in g.node:
        before, after = new_nodes.get(id(n), [[], []])
        nodes += before + [n] + after
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, str(qdq_path))
    return len({id(n) for n, _, _ in todo})
