"""Quantization-aware training (fake quantization with straight-through estimators).

Numerics follow edgecomp's int8 contract (TFLite-style): weights int8 symmetric per
output channel (grid ``[-127, 127]``, scale ``max|w| / 127``), activations int8
asymmetric per tensor (ranges observed with an exponential moving average of
min/max, zero included).  Batch-norm is folded into the preceding convolution
first, exactly as the ONNX exporter will do, so the fine-tuned weights are the
ones that get quantized.

Route to a deployable model (the "simple robust" one): after fine-tuning, the
fake-quantized weights are baked into the float weights (they already lie on the
int8 grid, so re-quantizing them is lossless), the float model is exported to ONNX
and quantized with ``edgecomp.compress.quantize.quantize_onnx`` using min/max
calibration on the *fine-tuned* model.  The QDQ ONNX then goes through the normal
compiler, so QAT gains survive compilation.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["fold_batchnorm", "FakeQuantizer", "attach_fake_quant", "calibrate_observers", "qat",
           "export_qdq", "fake_quant"]


def fake_quant(x, scale, zero_point, qmin: int, qmax: int):
    """Quantize-dequantize with a clipped straight-through gradient."""
    import torch
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    y = (q - zero_point) * scale
    inside = ((x / scale + zero_point) >= qmin - 0.5) & ((x / scale + zero_point) <= qmax + 0.5)
    # value of y, gradient of x (masked outside the representable range)
    return x * inside + (y - x * inside).detach()


def _weight_fq_module(bits: int):
    import torch
    import torch.nn as nn
    qmax = 2 ** (bits - 1) - 1

    class WeightFakeQuant(nn.Module):
        """Per-output-channel symmetric fake quantization of a weight (a parametrization)."""

        def forward(self, w):
            dims = tuple(range(1, w.dim()))
            scale = (w.detach().abs().amax(dim=dims, keepdim=True) / qmax).clamp_min(1e-12)
            return fake_quant(w, scale, torch.zeros_like(scale), -qmax, qmax)

    return WeightFakeQuant()


class FakeQuantizer:
    """Per-tensor asymmetric activation fake quantizer with an EMA min/max observer."""

    def __init__(self, bits: int = 8, momentum: float = 0.9):
        self.bits, self.momentum = bits, momentum
        self.lo = self.hi = None
        self.observe = True
        self.quantize = True

    def qparams(self):
        import torch
        qmin, qmax = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max((hi - lo) / (qmax - qmin), 1e-12)
        zp = float(np.clip(np.round(qmin - lo / scale), qmin, qmax))
        return torch.tensor(scale), torch.tensor(zp), qmin, qmax

    def __call__(self, x):
        if self.observe:
            lo, hi = float(x.detach().min()), float(x.detach().max())
            if self.lo is None:
                self.lo, self.hi = lo, hi
            else:
                m = self.momentum
                self.lo, self.hi = m * self.lo + (1 - m) * lo, m * self.hi + (1 - m) * hi
        if not self.quantize or self.lo is None:
            return x
        scale, zp, qmin, qmax = self.qparams()
        return fake_quant(x, scale, zp, qmin, qmax)


class _Handle:
    def __init__(self, model):
        self.model, self.hooks, self.params, self.act = model, [], [], {}

    def set(self, *, observe: bool | None = None, quantize: bool | None = None):
        for fq in self.act.values():
            if observe is not None:
                fq.observe = observe
            if quantize is not None:
                fq.quantize = quantize

    def remove(self, bake: bool = True):
        """Drop the hooks; ``bake`` keeps the fake-quantized weights as the float weights."""
        import torch.nn.utils.parametrize as P
        for h in self.hooks:
            h.remove()
        for m in self.params:
            if P.is_parametrized(m, "weight"):
                P.remove_parametrizations(m, "weight", leave_parametrized=bake)
        self.hooks, self.params = [], []
        return self.model


_ACT_TYPES = ("Conv1d", "Conv2d", "Linear", "ReLU", "ReLU6", "Hardtanh", "Sigmoid", "Tanh", "BatchNorm2d")


def attach_fake_quant(model, *, weight_bits: dict[str, int] | int | None = 8, act_bits: dict[str, int] | int | None = 8,
                      quantize_input: bool = True):
    """Fake-quantize weights of Conv/Linear layers and outputs of Conv/Linear/activation layers.

    ``weight_bits`` / ``act_bits``: one bit width for all layers, a dict
    {module name: bits} (layers not named stay float; 32 means float), or None.
    Returns a handle with ``set(observe=, quantize=)`` and ``remove(bake=True)``.
    """
    import torch.nn as nn
    import torch.nn.utils.parametrize as P
    h = _Handle(model)

    def bits_for(spec, name):
        if spec is None:
            return None
        b = spec if isinstance(spec, int) else spec.get(name)
        return None if b is None or b >= 32 else int(b)

    for name, m in model.named_modules():
        if not name:
            continue
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            b = bits_for(weight_bits, name)
            if b is not None:
                P.register_parametrization(m, "weight", _weight_fq_module(b))
                h.params.append(m)
        if type(m).__name__ in _ACT_TYPES:
            b = bits_for(act_bits, name)
            if b is not None:
                fq = FakeQuantizer(b)
                h.act[name] = fq
                h.hooks.append(m.register_forward_hook(lambda _m, _i, o, fq=fq: fq(o)))
    if quantize_input and isinstance(act_bits, int):
        fq = FakeQuantizer(act_bits)
        h.act["<input>"] = fq
        h.hooks.append(model.register_forward_pre_hook(lambda _m, args, fq=fq: (fq(args[0]),) + tuple(args[1:])))
    return h


def calibrate_observers(model, handle, x, batches: int = 8, batch: int = 128):
    """Observe activation ranges on ``x`` without quantizing (eval mode), then enable quantization."""
    import torch
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    handle.set(observe=True, quantize=False)
    for fq in handle.act.values():
        fq.momentum = 0.0  # plain min/max during calibration (ORT minmax does the same)
    model.eval()
    with torch.no_grad():
        lo = {k: [] for k in handle.act}
        hi = {k: [] for k in handle.act}
        for i in range(0, min(len(xt), batches * batch), batch):
            model(xt[i:i + batch].float())
            for k, fq in handle.act.items():
                lo[k].append(fq.lo)
                hi[k].append(fq.hi)
    for k, fq in handle.act.items():
        if lo[k]:
            fq.lo, fq.hi = min(lo[k]), max(hi[k])
        fq.momentum = 0.9
    handle.set(observe=False, quantize=True)
    return handle


def fold_batchnorm(model, example_input=None, *, inplace: bool = False):
    """Fold every BatchNorm that directly follows a conv/linear (its only user) into it."""
    import torch
    import torch.fx as fx
    import torch.nn as nn
    if not inplace:
        model = copy.deepcopy(model)
    try:
        gm = fx.symbolic_trace(model)
    except Exception:
        return model  # untraceable: leave BN (the exporter still folds it)
    mods = dict(gm.named_modules())
    for n in gm.graph.nodes:
        if n.op != "call_module" or not isinstance(mods[n.target], (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        src = n.args[0]
        if not (hasattr(src, "op") and src.op == "call_module" and len(src.users) == 1):
            continue
        conv, bn = mods[src.target], mods[n.target]
        if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Linear)) or bn.running_mean is None:
            continue
        with torch.no_grad():
            std = (bn.running_var + bn.eps).sqrt()
            g = (bn.weight if bn.weight is not None else torch.ones_like(std)) / std
            beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
            conv.weight.mul_(g.reshape(-1, *([1] * (conv.weight.dim() - 1))))
            b = conv.bias if conv.bias is not None else torch.zeros_like(std)
            conv.bias = nn.Parameter((b - bn.running_mean) * g + beta)
        parent, _, attr = n.target.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
    return model


def qat(model, x, y, *, epochs: int = 3, lr: float = 2e-4, bits: int = 8, example_input=None,
        seed: int = 0, x_val=None, y_val=None, verbose: bool = True, teacher="self",
        temperature: float = 2.0, alpha: float = 0.5, task=None):
    """Fold BN, fake-quantize (weights per-channel symmetric, activations per-tensor asymmetric),
    fine-tune, and return the float model with int8-grid weights (ready for :func:`export_qdq`)."""
    from .distill import accuracy, fit
    if bits < 2 or bits > 16:
        raise ModelError(f"QAT supports 2..16 bits, got {bits}", "qat", "Use bits=8")
    if teacher == "self":
        teacher = copy.deepcopy(model).eval()
    m = fold_batchnorm(model, example_input)
    h = attach_fake_quant(m, weight_bits=bits, act_bits=bits)
    calibrate_observers(m, h, x)
    if verbose and x_val is not None and task is None:
        print(f"  [qat] fake-quant int{bits} before fine-tuning: val acc {accuracy(m, x_val, y_val) * 100:.2f} %",
              file=sys.stderr)
    h.set(observe=True, quantize=True)
    fit(m, x, y, epochs=epochs, lr=lr, seed=seed, verbose=verbose, label="qat", x_val=x_val, y_val=y_val,
        teacher=teacher, temperature=temperature, alpha=alpha, task=task)
    h.remove(bake=True)
    return m


def export_qdq(model, example_input, calib, out_path, *, method: str = "minmax", progress: bool = False,
               keep_float=()) -> Path:
    """Float export (``frontends.torch.export_onnx``) then ORT QDQ int8 (``quantize_onnx``);
    ``keep_float`` layers stay float32 (mixed precision)."""
    import tempfile

    from ..frontends.torch import export_onnx
    from .quantize import quantize_onnx
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as td:
        f = export_onnx(model, example_input, Path(td) / "float.onnx")
        return quantize_onnx(f, calib, out_path, method=method, per_channel=True, progress=progress,
                             keep_float=keep_float)
