"""Per-layer compression report and size/latency estimates for PyTorch models.

:func:`layer_stats` walks a model with forward hooks: parameters, MACs, sparsity,
bits and bytes per Conv/Linear layer.  :func:`estimate_target` turns that into
flash / RAM / instruction estimates for a Cortex-M bundle when the real compiler
cannot be run; every such number is marked ``estimated``.  Unstructured sparsity
does not shrink flash: the C backend stores dense weights, so zeros cost the same
bytes as any other value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["LayerStat", "layer_stats", "totals", "estimate_target", "layer_table", "compare_table",
           "onnx_predict", "SPARSITY_NOTE"]

SPARSITY_NOTE = ("Unstructured sparsity (zeroed weights) does NOT shrink flash or speed up the C backend: "
                 "it stores and multiplies dense weights. Only structured pruning, low-rank factorization, "
                 "distillation into a smaller student and fewer bits make the bundle smaller.")

# Rough costs of edgecomp's reference int8 kernels on Cortex-M4 (fitted to QEMU runs of the MNIST
# CNN: ~10 instructions per MAC int8, ~4 KiB code), used only when a
# bundle cannot be compiled and run; calibrated against QEMU runs when available.
EST_CODE_BYTES = 4 * 1024
EST_INSNS_PER_MAC = 10.5
EST_INSNS_PER_LAYER = 400
EST_STACK_BYTES = 512


@dataclass
class LayerStat:
    name: str
    op: str
    params: int
    macs: int
    sparsity: float
    bits: int
    bytes_fp32: int
    bytes: int
    in_elems: int
    out_elems: int
    out_shape: tuple


def layer_stats(model, example_input, bits: int | dict[str, int] = 8) -> list[LayerStat]:
    """Per Conv/Linear layer stats for one input sample.  ``bits``: weight bits for all
    layers or {name: bits} (32 = float; biases are int32 for int8/int16 layers)."""
    import torch
    import torch.nn as nn
    ex = example_input if isinstance(example_input, torch.Tensor) else torch.from_numpy(np.asarray(example_input))
    ex = ex[:1].float()
    rows, hooks = [], []

    def hook(name):
        def f(m, inp, out):
            w = m.weight.detach()
            nb = bits if isinstance(bits, int) else bits.get(name, 8)
            p_w = w.numel()
            p_b = m.bias.numel() if m.bias is not None else 0
            if isinstance(m, nn.Linear):
                macs = int(np.prod(out.shape[:-1])) * m.in_features * m.out_features
            else:
                macs = int(out.numel()) * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))
            nbytes = p_w * nb // 8 + p_b * (4 if nb < 32 else 4)
            rows.append(LayerStat(name, type(m).__name__ + (f"(groups={m.groups})" if getattr(m, "groups", 1) > 1 else ""),
                                  p_w + p_b, macs, float((w == 0).sum()) / max(1, p_w), nb, (p_w + p_b) * 4, nbytes,
                                  int(inp[0].numel()), int(out.numel()), tuple(out.shape)))
        return f

    for n, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook(n)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(ex)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return rows


def totals(rows: list[LayerStat]) -> dict:
    p = sum(r.params for r in rows)
    zeros = sum(r.sparsity * r.params for r in rows)
    return {"params": p, "macs": sum(r.macs for r in rows), "bytes": sum(r.bytes for r in rows),
            "bytes_fp32": sum(r.bytes_fp32 for r in rows), "sparsity": zeros / max(1, p)}


def estimate_target(model, example_input, bits: int = 8) -> dict:
    """Flash / RAM / instructions estimated from params and MACs (no compiler run)."""
    rows = layer_stats(model, example_input, bits)
    t = totals(rows)
    act = 1 if bits == 8 else 2 if bits == 16 else 4
    chans = sum(int(r.out_shape[1]) if len(r.out_shape) > 1 else 1 for r in rows)
    peak = max((r.in_elems + r.out_elems) * act for r in rows) if rows else 0
    flash = t["bytes"] + (8 * chans if bits < 32 else 0) + EST_CODE_BYTES
    insns = int(t["macs"] * EST_INSNS_PER_MAC + EST_INSNS_PER_LAYER * len(rows))
    return {"params": t["params"], "macs": t["macs"], "flash_bytes": int(flash), "ram_bytes": int(peak + EST_STACK_BYTES),
            "instructions": insns, "estimated": True}


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, (int, np.integer)) else str(n)


def layer_table(rows: list[LayerStat]) -> str:
    """Markdown table: one row per layer plus totals and the sparsity note when relevant."""
    out = ["| layer | op | out shape | params | MACs | sparsity | bits | bytes fp32 | bytes |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r.name} | {r.op} | {'x'.join(map(str, r.out_shape[1:]))} | {_fmt(r.params)} | {_fmt(r.macs)} | "
                   f"{r.sparsity * 100:.1f} % | {r.bits} | {_fmt(r.bytes_fp32)} | {_fmt(r.bytes)} |")
    t = totals(rows)
    out.append(f"| **total** | | | {_fmt(t['params'])} | {_fmt(t['macs'])} | {t['sparsity'] * 100:.1f} % | | "
               f"{_fmt(t['bytes_fp32'])} | {_fmt(t['bytes'])} |")
    if t["sparsity"] > 0.01:
        out += ["", SPARSITY_NOTE]
    return "\n".join(out)


def compare_table(before: list[LayerStat], after: list[LayerStat]) -> str:
    """Per-layer before/after table (layers matched by name; factored layers show their parts)."""
    b = {r.name: r for r in before}
    out = ["| layer | params before | params after | MACs before | MACs after | sparsity | bits | bytes before (fp32) | bytes after |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    seen = set()
    for r in after:
        base = r.name if r.name in b else r.name.rsplit(".", 1)[0]
        o = b.get(base)
        first = base not in seen
        seen.add(base)
        out.append(f"| {r.name} | {_fmt(o.params) if o and first else ''} | {_fmt(r.params)} | "
                   f"{_fmt(o.macs) if o and first else ''} | {_fmt(r.macs)} | {r.sparsity * 100:.1f} % | {r.bits} | "
                   f"{_fmt(o.bytes_fp32) if o and first else ''} | {_fmt(r.bytes)} |")
    for name, o in b.items():
        if name not in seen:
            out.append(f"| {name} (removed) | {_fmt(o.params)} | 0 | {_fmt(o.macs)} | 0 | | | {_fmt(o.bytes_fp32)} | 0 |")
    tb, ta = totals(before), totals(after)
    out.append(f"| **total** | {_fmt(tb['params'])} | {_fmt(ta['params'])} | {_fmt(tb['macs'])} | {_fmt(ta['macs'])} | "
               f"{ta['sparsity'] * 100:.1f} % | | {_fmt(tb['bytes_fp32'])} | {_fmt(ta['bytes'])} |")
    if ta["sparsity"] > 0.01:
        out += ["", SPARSITY_NOTE]
    return "\n".join(out)


def onnx_predict(path, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model (float or QDQ) in ONNX Runtime sample by sample (exports have batch 1)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    batch = s.get_inputs()[0].shape[0]
    x = np.asarray(x, dtype=np.float32)
    if isinstance(batch, int) and batch == 1:
        return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return s.run(None, {name: x})[0]


def as_dict(rows: list[LayerStat]) -> list[dict]:
    return [asdict(r) for r in rows]
