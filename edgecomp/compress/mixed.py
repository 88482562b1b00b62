"""Mixed precision: per-layer sensitivity and a per-layer int8 / int16 / float32 choice.

Sensitivity: fake-quantize ONE Conv/Linear layer at a time (weights per-channel
symmetric, its output per-tensor asymmetric, ranges from calibration data; batch
norm folded first) and measure the accuracy drop on validation data.

Choice: start with every layer at the lowest precision, then promote the most
sensitive layers (int8 -> int16 -> float32) until the whole fake-quantized model is
within the accuracy-drop budget, or every layer is float.

Compiling the choice (:func:`compile_mixed`): the base model is int8; layers chosen at
more than 8 bits run in float32 kernels between a dequantize and a quantize, and the rest
in int8 (a sub-8-bit choice is stored as int8).  An int16 choice is promoted to float32:
the C backend has int16 (16x8) kernels, but only for whole int16 models
(``precision="int16"``); a per-layer int8/int16 mix would need per-tensor activation types
in the quantizer and int8 <-> int16 requantize layers at the boundaries, not done yet.
"""
from __future__ import annotations

import sys

from ..errors import ModelError

__all__ = ["layer_sensitivity", "choose_precision", "precision_table", "float_layers", "compile_mixed"]


def _layers(model):
    import torch.nn as nn
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _fq_accuracy(model, bits: dict[str, int], x_cal, x, y, task=None) -> float:
    from .distill import evaluate
    from .qat import attach_fake_quant, calibrate_observers
    h = attach_fake_quant(model, weight_bits=bits, act_bits=bits, quantize_input=False)
    try:
        calibrate_observers(model, h, x_cal)
        return evaluate(model, x, y, task)
    finally:
        h.remove(bake=False)


def _drop(base: float, score: float, task) -> float:
    return (base - score) * 100 if task is None else task.drop(base, score)


def layer_sensitivity(model, x_cal, x_val, y_val, *, bits: int = 8, verbose: bool = False, task=None) -> list[dict]:
    """[{layer, params, accuracy, drop (points)}] quantizing one layer at a time, most sensitive first
    (``accuracy`` is the task's score when a :class:`~edgecomp.compress.task.Task` is given)."""
    from .distill import evaluate
    from .qat import fold_batchnorm
    m = fold_batchnorm(model)
    base = evaluate(m, x_val, y_val, task)
    rows = []
    for name in _layers(m):
        acc = _fq_accuracy(m, {name: bits}, x_cal, x_val, y_val, task)
        p = sum(q.numel() for q in m.get_submodule(name).parameters())
        rows.append({"layer": name, "params": p, "accuracy": acc, "drop": _drop(base, acc, task)})
        if verbose:
            print(f"  [sensitivity int{bits}] {name}: {acc * 100:.2f} % ({(base - acc) * 100:+.2f} pts)",
                  file=sys.stderr)
    return sorted(rows, key=lambda r: -r["drop"])


def choose_precision(model, x_cal, x_val, y_val, *, max_drop: float = 0.5, options=(8, 16, 32),
                     verbose: bool = False, task=None) -> dict:
    """Per-layer bits within ``max_drop`` accuracy points of float; returns
    {bits: {layer: b}, accuracy, drop, baseline, bytes, bytes_int8, sensitivity}."""
    from .distill import evaluate
    from .qat import fold_batchnorm
    if max_drop < 0:
        raise ModelError(f"max_drop must be >= 0, got {max_drop}", "choose_precision", "Use e.g. 0.5 (points)")
    opts = sorted(options)
    m = fold_batchnorm(model)
    base = evaluate(m, x_val, y_val, task)
    sens = layer_sensitivity(m, x_cal, x_val, y_val, bits=opts[0], verbose=verbose, task=task)
    bits = {r["layer"]: opts[0] for r in sens}
    acc = _fq_accuracy(m, bits, x_cal, x_val, y_val, task)
    order = [r["layer"] for r in sens]
    while _drop(base, acc, task) > max_drop:
        cand = next((l for lvl in opts[:-1] for l in order if bits[l] == lvl), None)
        if cand is None:
            break
        bits[cand] = opts[opts.index(bits[cand]) + 1]
        acc = _fq_accuracy(m, bits, x_cal, x_val, y_val, task)
        if verbose:
            print(f"  [mixed] {cand} -> {'float32' if bits[cand] >= 32 else f'int{bits[cand]}'}: "
                  f"{acc * 100:.2f} %", file=sys.stderr)
    params = {r["layer"]: r["params"] for r in sens}
    nbytes = sum(params[l] * b // 8 for l, b in bits.items())
    return {"bits": bits, "accuracy": acc, "drop": _drop(base, acc, task), "baseline": base, "bytes": nbytes,
            "bytes_int8": sum(params.values()), "sensitivity": sens, "compiled": False}


def precision_table(result: dict) -> str:
    lines = ["| layer | params | drop alone at the lowest bits (pts) | chosen | bytes |", "|---|---:|---:|---|---:|"]
    for r in result["sensitivity"]:
        b = result["bits"][r["layer"]]
        lines.append(f"| {r['layer']} | {r['params']:,} | {r['drop']:+.2f} | {'float32' if b >= 32 else f'int{b}'} | "
                     f"{r['params'] * b // 8:,} |")
    lines.append(f"\nMixed: {result['accuracy'] * 100:.2f} % ({result['drop']:+.2f} pts vs float "
                 f"{result['baseline'] * 100:.2f} %), weights {result['bytes']:,} B (all-int8 {result['bytes_int8']:,} B). "
                 "Compiled by compile_mixed: layers above 8 bits run float32 kernels, the rest int8.")
    return "\n".join(lines)


def float_layers(result: dict) -> list[str]:
    """Module paths the compiled mix keeps in float32 (every layer chosen above 8 bits)."""
    return [layer for layer, b in result["bits"].items() if b > 8]


def compile_mixed(model, result: dict, target: str, out_dir, *, example_input, calib, keep_onnx=None) -> dict:
    """Compile ``model`` with the per-layer choice of :func:`choose_precision`; returns the manifest."""
    from ..api import compile_model
    return compile_model(model, target, out_dir, example_input=example_input, calib=calib,
                         keep_float=float_layers(result), keep_onnx=keep_onnx)
