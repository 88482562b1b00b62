"""Mixed precision: per-layer sensitivity, then a per-layer choice of bits under accuracy and flash.

Options per Conv/Linear layer: packed b-bit weights (b < 8, e.g. int4: ``ec_kernels_s4``, 8-bit
activations), int8, or float32 (32; 16 is accepted and compiled as float32: the C backend runs
int16 activations only for whole models, so a single int16 layer would cost float's flash anyway).

Sensitivity: fake-quantize ONE layer at a time at each option (weights per-channel symmetric on the
b-bit grid, its output per-tensor asymmetric int8; batch norm folded first) and measure the drop on
validation data.

Choice: start with every layer at the lowest option; while the whole fake-quantized model drops more
than ``max_drop``, promote the layer whose promotion buys the most accuracy per byte of flash (by the
sensitivities), never past ``flash_budget`` (the bytes are :func:`edgecomp.compress.lowbit.layer_bytes`:
what the C backend stores for the layer).  The result predicts the bundle's flash as ``fixed_bytes`` (the
part of a compiled int8 bundle that is not layer constants) plus the chosen layers' bytes.

Compiling the choice (:func:`compile_mixed`): int8 QDQ from ONNX Runtime, layers above 8 bits kept in
float32, layers below rewritten to their b-bit grid (:func:`edgecomp.compress.lowbit.rewrite`) and
stored packed in flash.
"""
from __future__ import annotations

import copy
import sys

from ..errors import ModelError

__all__ = ["layer_sensitivity", "choose_precision", "precision_table", "float_layers", "lowbit_layers",
           "compile_mixed", "layer_shapes", "finetune_bits", "fixed_bytes"]


def _layers(model):
    """Conv (not grouped or depthwise: those stay int8, they are small and have no packed kernel) and
    Linear layers."""
    import torch.nn as nn
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups == 1)]


def layer_shapes(model) -> dict[str, tuple[int, int]]:
    """{layer: (output channels, weights per output channel)} of the Conv/Linear layers."""
    out = {}
    for n in _layers(model):
        w = model.get_submodule(n).weight
        out[n] = (int(w.shape[0]), int(w[0].numel()))
    return out


def _fake_bits(bits: dict[str, int]) -> tuple[dict, dict]:
    """(weight bits, activation bits) of the fake quantizers for a per-layer choice."""
    wb = {k: min(b, 8) for k, b in bits.items() if b < 16}
    ab = {k: 8 for k, b in bits.items() if b < 16}
    return wb, ab


def _fq_accuracy(model, bits: dict[str, int], x_cal, x, y, task=None) -> float:
    from .distill import evaluate
    from .qat import attach_fake_quant, calibrate_observers
    wb, ab = _fake_bits(bits)
    h = attach_fake_quant(model, weight_bits=wb, act_bits=ab, quantize_input=False)
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
            print(f"  [sensitivity {bits} bits] {name}: {acc * 100:.2f} % ({rows[-1]['drop']:+.2f})", file=sys.stderr)
    return sorted(rows, key=lambda r: -r["drop"])


def fixed_bytes(int8_flash: int, model) -> int:
    """The part of a compiled all-int8 bundle's flash that is not layer constants (code, tables...)."""
    from .lowbit import layer_bytes
    return int(int8_flash - sum(layer_bytes(o, k, 8) for o, k in layer_shapes(model).values()))


def choose_precision(model, x_cal, x_val, y_val, *, max_drop: float = 0.5, options=(4, 8, 32),
                     verbose: bool = False, task=None, flash_budget: int | None = None,
                     fixed: int | None = None) -> dict:
    """Per-layer bits within ``max_drop`` of float (and, with ``flash_budget`` and ``fixed`` =
    :func:`fixed_bytes`, the predicted flash within the budget).  Returns {bits: {layer: b}, accuracy,
    drop, baseline, bytes, bytes_int8, predicted_flash, meets: {accuracy, flash}, sensitivity}."""
    from .distill import evaluate
    from .lowbit import layer_bytes
    from .qat import fold_batchnorm
    if max_drop < 0:
        raise ModelError(f"max_drop must be >= 0, got {max_drop}", "choose_precision", "Use e.g. 0.5 (points)")
    opts = sorted(set(int(b) for b in options))
    if any(b < 2 or (8 < b < 16) or b > 32 for b in opts):
        raise ModelError(f"bit widths {opts}", "choose_precision", "Use 2..8 (packed below 8), 16 or 32")
    m = fold_batchnorm(model)
    shapes = layer_shapes(m)
    base = evaluate(m, x_val, y_val, task)
    sens = {}
    for name in shapes:
        sens[name] = {b: (0.0 if b >= 16 else _drop(base, _fq_accuracy(m, {name: b}, x_cal, x_val, y_val, task), task))
                      for b in opts}
        if verbose:
            print(f"  [mixed] {name}: " + ", ".join(f"{b} bits {d:+.2f}" for b, d in sens[name].items()), file=sys.stderr)
    nbytes = lambda name, b: layer_bytes(*shapes[name], b)  # noqa: E731
    bits = {n: opts[0] for n in shapes}
    total = lambda: sum(nbytes(n, b) for n, b in bits.items())  # noqa: E731
    acc = _fq_accuracy(m, bits, x_cal, x_val, y_val, task)
    while _drop(base, acc, task) > max_drop:
        best = None
        for n, b in bits.items():
            if b == opts[-1]:
                continue
            nb = opts[opts.index(b) + 1]
            extra = nbytes(n, nb) - nbytes(n, b)
            if flash_budget is not None and fixed is not None and fixed + total() + extra > flash_budget:
                continue
            gain = sens[n][b] - sens[n][nb]
            key = (gain / max(extra, 1), gain, sens[n][b])
            if best is None or key > best[0]:
                best = (key, n, nb)
        if best is None:
            break  # nothing left to promote within the flash budget
        bits[best[1]] = best[2]
        acc = _fq_accuracy(m, bits, x_cal, x_val, y_val, task)
        if verbose:
            print(f"  [mixed] {best[1]} -> {_name(best[2])}: {acc * 100:.2f}", file=sys.stderr)
    drop = _drop(base, acc, task)
    b_total = total()
    pred = fixed + b_total if fixed is not None else None
    rows = sorted(({"layer": n, "params": sum(q.numel() for q in m.get_submodule(n).parameters()),
                    "out": shapes[n][0], "taps": shapes[n][1], "drops": sens[n], "drop": sens[n][opts[0]]}
                   for n in shapes), key=lambda r: -r["drop"])
    return {"bits": bits, "accuracy": acc, "drop": drop, "baseline": base, "bytes": b_total,
            "bytes_int8": sum(nbytes(n, 8) for n in shapes), "predicted_flash": pred, "options": opts,
            "meets": {"accuracy": drop <= max_drop + 1e-9,
                      "flash": None if flash_budget is None or pred is None else pred <= flash_budget},
            "sensitivity": rows, "compiled": False}


def _name(b: int) -> str:
    return "float32" if b >= 16 else f"int{b}"


def precision_table(result: dict) -> str:
    from .lowbit import layer_bytes
    opts = result.get("options", [result["sensitivity"][0].get("bits", 8)])
    low = [b for b in opts if b < 16]
    lines = ["| layer | params | " + " | ".join(f"drop alone at {b} bits" for b in low) + " | chosen | bytes |",
             "|---|---:|" + "---:|" * len(low) + "---|---:|"]
    for r in result["sensitivity"]:
        b = result["bits"][r["layer"]]
        drops = r.get("drops", {opts[0]: r["drop"]})
        lines.append(f"| {r['layer']} | {r['params']:,} | " + " | ".join(f"{drops.get(x, 0.0):+.2f}" for x in low)
                     + f" | {_name(b)} | {layer_bytes(r.get('out', 1), r.get('taps', r['params']), b):,} |")
    pred = result.get("predicted_flash")
    lines.append(f"\nMixed (fake-quantized): {result['accuracy'] * 100:.2f} % ({result['drop']:+.2f} vs float "
                 f"{result['baseline'] * 100:.2f} %), layer constants {result['bytes']:,} B (all-int8 "
                 f"{result['bytes_int8']:,} B)" + (f", predicted flash {pred:,} B" if pred else "") +
                 ". Compiled by compile_mixed: layers below 8 bits packed in flash (ec_kernels_s4), layers above "
                 "8 bits in float32 kernels, the rest int8.")
    return "\n".join(lines)


def float_layers(result: dict) -> list[str]:
    """Module paths the compiled mix keeps in float32 (every layer chosen above 8 bits)."""
    return [layer for layer, b in result["bits"].items() if b > 8]


def lowbit_layers(result: dict) -> dict[str, dict]:
    """{module path: {"bits": b}} of the layers stored below 8 bits."""
    return {layer: {"bits": b} for layer, b in result["bits"].items() if b < 8}


def finetune_bits(model, bits: dict[str, int], x, y, *, epochs: int, lr: float, teacher=None, task=None,
                  seed: int = 0):
    """Fine-tune with each layer's weights fake-quantized at its chosen bits (float layers untouched),
    distilled from ``teacher``; BN folded first.  Returns the float model with weights on those grids."""
    from .distill import fit
    from .qat import attach_fake_quant, calibrate_observers, fold_batchnorm
    m = fold_batchnorm(copy.deepcopy(model))
    wb, ab = _fake_bits(bits)
    h = attach_fake_quant(m, weight_bits=wb, act_bits=ab, quantize_input=False)
    calibrate_observers(m, h, x)
    h.set(observe=True, quantize=True)
    fit(m, x, y, epochs=epochs, lr=lr, seed=seed, verbose=False, teacher=teacher, task=task)
    h.remove(bake=True)
    return m.eval()


def onnx_nodes(qdq_path, layers) -> dict[str, str]:
    """{module path: ONNX node name} for the quantized layers of a QDQ file."""
    import onnx

    from .quantize import resolve_layers
    m = onnx.load(str(qdq_path))
    return {layer: resolve_layers(m, [layer])[0] for layer in layers}


def compile_mixed(model, result: dict, target: str, out_dir, *, example_input, calib, keep_onnx=None) -> dict:
    """Compile ``model`` with the per-layer choice of :func:`choose_precision`; returns the manifest
    (``manifest["mixed"]``: the weight plan and the predicted flash)."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..api import compile_model
    from .lowbit import compile_lowbit, rewrite
    from .qat import export_qdq
    keep, low = float_layers(result), lowbit_layers(result)
    if not low:
        return compile_model(model, target, out_dir, example_input=example_input, calib=calib, keep_float=keep,
                             keep_onnx=keep_onnx)
    with tempfile.TemporaryDirectory(prefix="edgecomp-mixed-") as td:
        q = export_qdq(model, example_input, calib, Path(td) / "mixed.int8.onnx", keep_float=keep)
        nodes = onnx_nodes(q, low)
        plan = rewrite(q, Path(td) / "mixed.lowbit.onnx", {nodes[k]: v for k, v in low.items()})
        man = compile_lowbit(Path(td) / "mixed.lowbit.onnx", target, Path(out_dir), plan,
                             options={"keep_float": keep} if keep else None)
        if keep_onnx is not None:
            shutil.copyfile(Path(td) / "mixed.lowbit.onnx", keep_onnx)
    man["mixed"] = {"weight_plan": plan, "predicted_flash": result.get("predicted_flash")}
    return man
