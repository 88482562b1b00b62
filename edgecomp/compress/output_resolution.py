"""The output-resolution rule: a classifier whose int8 output step is coarser than its decisions.

An all-convolutional classifier (SqueezeNet, Network-in-Network) ends in a weightless mean: class
maps averaged over the pixels (``GlobalAveragePool``, ``ReduceMean``, ``AveragePool``), maybe
flattened.  The mean of H x W int8 values carries H x W times finer steps than its inputs, but ONNX
Runtime's QDQ graph rounds it to one int8 step of the whole output range.  Where the float model's
top-1 margin (best logit minus second best) is below that step, int8 cannot tell the two classes
apart: the answers tie (and the first index wins) or flip.  Every layer can be quantized well (high
SQNR) and top-1 agreement still lose several percent this way (the zoo's SqueezeNet: output SQNR
44 dB, 18 % of samples decided by less than one output step, 93 % agreement; the same graph with a
float mean: 99 %).

Rule (int8, float models quantized by edgecomp): when a graph output comes from such a mean and at
least :data:`NARROW_FRACTION` of the calibration samples have a float top-1 margin below the
output's int8 step, the mean is left in float32 (its int8 input is dequantized, the averaged output
stays float).  The cost is a few float adds per output value and a float32 output tensor; the
compile output and ``edgecomp report`` list the layer with the reason (``reason_for``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

#: Ops that average their input (no weights) and may end a classifier.
MEAN_OPS = ("GlobalAveragePool", "ReduceMean", "AveragePool")
#: Ops between that mean and the graph output that only change the shape.
SHAPE_OPS = ("Flatten", "Reshape", "Squeeze")
#: The rule fires when at least this fraction of the calibration samples is decided by less than
#: one output step (one sample in twenty: about the loss the int8 output alone would cause at the
#: 95 % top-1 agreement edgecomp aims for).
NARROW_FRACTION = 0.05


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def output_means(qdq: onnx.ModelProto) -> list[tuple[str, str, float]]:
    """(graph output, mean node name, int8 step of the mean's output) for each output of the QDQ
    model that is a quantized weightless mean, read through shape ops and QDQ pairs."""
    prod = _producers(qdq)
    consts = {i.name: i for i in qdq.graph.initializer}
    found = []
    for out in qdq.graph.output:
        t, node = out.name, prod.get(out.name)
        while node is not None and node.op_type in SHAPE_OPS + ("QuantizeLinear", "DequantizeLinear"):
            t = node.input[0]
            node = prod.get(t)
        if node is None or node.op_type not in MEAN_OPS or not node.name:
            continue
        q = [c for c in _consumers(qdq, node.output[0]) if c.op_type == "QuantizeLinear"]
        if len(q) != 1 or q[0].input[1] not in consts:
            continue  # already float (or not quantized as one tensor)
        zp = consts.get(q[0].input[2]) if len(q[0].input) > 2 else None
        if zp is not None and numpy_helper.to_array(zp).dtype != np.int8:
            continue  # int16 activations: steps 256 times finer
        scale = numpy_helper.to_array(consts[q[0].input[1]])
        if scale.size == 1:
            found.append((out.name, node.name, float(scale.reshape(-1)[0])))
    return found


def narrow_fraction(outputs: np.ndarray, step: float) -> float:
    """Fraction of samples (first axis) whose top-1 margin is below ``step``; 0 for one class."""
    flat = outputs.reshape(outputs.shape[0], -1)
    if flat.shape[1] < 2:
        return 0.0
    top2 = np.sort(flat, axis=1)[:, -2:]
    return float(np.mean(top2[:, 1] - top2[:, 0] < step))


def reason_for(fraction: float, step: float) -> str:
    return (f"output resolution: {fraction:.0%} of the calibration samples are decided by less than "
            f"one int8 output step ({step:.3g}); a float mean keeps them apart")


def means_to_keep_float(float_model_path: str, qdq_path: str, samples: list[np.ndarray], input_name: str,
                        tick: Callable[[], None] = lambda: None) -> dict[str, str]:
    """{mean node name: reason} for the output means the rule leaves in float (see the module doc).

    Runs the float model on ``samples`` (ONNX Runtime) only when the QDQ model has such a mean;
    ``tick`` is called once per sample (the calibration child's stall timer)."""
    cands = output_means(onnx.load(qdq_path))
    if not cands:
        return {}
    import onnxruntime as ort
    sess = ort.InferenceSession(float_model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for s in samples:
        tick()
        for n, v in zip(names, sess.run(None, {input_name: s})):
            outs[n].append(np.asarray(v))
    keep = {}
    for out, node, step in cands:
        if out not in outs:
            continue
        frac = narrow_fraction(np.concatenate(outs[out], axis=0), step)
        if frac >= NARROW_FRACTION:
            keep[node] = reason_for(frac, step)
    return keep
