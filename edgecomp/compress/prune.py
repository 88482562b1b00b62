"""Pruning: unstructured (magnitude, Taylor) and structured channel pruning.

Unstructured pruning (``torch.nn.utils.prune``) zeroes single weights.  It does
NOT shrink flash or speed up the C backend, which stores and multiplies dense
weights; it only helps a later compressor or a sparse kernel.  The report says so.

Structured pruning removes whole output channels (conv filters / linear units)
and physically shrinks every tensor that touches them: the producing layer's
weight and bias, batch-norm statistics, depthwise convs that carry the channels,
the next conv/linear's input, and the flatten -> linear boundary (the linear's
input features are channel-major blocks of H*W).  Producers whose outputs are
added (residual connections) form one group pruned with one shared channel set.
The dependency analysis (:mod:`edgecomp.compress.channels`: a ``torch.fx`` trace plus shape
propagation; concatenations and grouped convolutions included) finds them, so the exported ONNX,
and the C generated from it, really are smaller and faster.
"""
from __future__ import annotations

import copy
import math
import sys
from typing import Any, Callable

import numpy as np

from ..errors import ModelError, UnsupportedError
from .channels import ChannelGroup, apply_keep as _apply_keep, channel_groups  # noqa: F401 (re-exported)

__all__ = ["magnitude_prune", "taylor_prune", "make_permanent", "sparsity", "channel_groups",
           "structured_prune", "iterative_prune", "prunable_layers"]


# --------------------------------------------------------------------------- unstructured
def prunable_layers(model) -> list[tuple[str, Any]]:
    import torch.nn as nn
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]


def _check_amount(amount: float, where: str) -> None:
    if not (isinstance(amount, (int, float)) and 0.0 <= amount < 1.0):
        raise ModelError(f"pruning amount must be a fraction in [0, 1), got {amount!r}", where,
                         "Pass e.g. amount=0.5 to remove half")


def magnitude_prune(model, amount: float, *, scope: str = "layer"):
    """Zero the ``amount`` smallest-|w| weights per layer (``scope="layer"``) or over all layers
    (``"global"``), as ``torch.nn.utils.prune`` masks (in place; fine-tuning keeps them zero)."""
    import torch.nn.utils.prune as P
    _check_amount(amount, "magnitude_prune")
    layers = prunable_layers(model)
    if not layers:
        raise UnsupportedError("the model has no Conv/Linear layer to prune", type(model).__name__)
    if scope == "global":
        P.global_unstructured([(m, "weight") for _, m in layers], pruning_method=P.L1Unstructured, amount=amount)
    elif scope == "layer":
        for _, m in layers:
            P.l1_unstructured(m, "weight", amount=amount)
    else:
        raise ModelError(f"unknown scope {scope!r}", "magnitude_prune", "Use 'layer' or 'global'")
    return model


def _grads(model, x, y, batches: int = 4, batch: int = 128):
    """Accumulated dL/dw over a few batches (model left with .grad populated)."""
    import torch
    import torch.nn.functional as F
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    yt = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
    model.eval()
    model.zero_grad()
    for i in range(min(batches, math.ceil(len(xt) / batch))):
        F.cross_entropy(model(xt[i * batch:(i + 1) * batch].float()), yt[i * batch:(i + 1) * batch].long()).backward()


def taylor_prune(model, amount: float, x, y, *, scope: str = "global", batches: int = 4):
    """Zero the weights with the smallest first-order Taylor saliency |w * dL/dw|."""
    import torch
    import torch.nn.utils.prune as P
    _check_amount(amount, "taylor_prune")
    layers = prunable_layers(model)
    _grads(model, x, y, batches)
    scores = {}
    for n, m in layers:
        w = m.weight
        g = w.grad if w.grad is not None else torch.zeros_like(w)
        scores[n] = (w.detach() * g).abs()
    if scope == "global":
        allv = torch.cat([s.flatten() for s in scores.values()])
        k = int(round(amount * allv.numel()))
        thr = allv.kthvalue(k).values if k > 0 else allv.min() - 1
        for n, m in layers:
            P.custom_from_mask(m, "weight", (scores[n] > thr).float())
    else:
        for n, m in layers:
            s = scores[n].flatten()
            k = int(round(amount * s.numel()))
            mask = torch.ones_like(s)
            if k > 0:
                mask[s.argsort()[:k]] = 0
            P.custom_from_mask(m, "weight", mask.view_as(scores[n]))
    model.zero_grad()
    return model


def make_permanent(model):
    """Fold pruning masks into the weights (``prune.remove``) so the model exports plainly."""
    import torch.nn.utils.prune as P
    for _, m in prunable_layers(model):
        if P.is_pruned(m):
            for hook in list(m._forward_pre_hooks.values()):
                if isinstance(hook, P.BasePruningMethod):
                    P.remove(m, hook._tensor_name)
    return model


def sparsity(model) -> float:
    """Fraction of exactly-zero weights over all Conv/Linear weights."""
    tot = nz = 0
    for _, m in prunable_layers(model):
        w = m.weight.detach()
        tot += w.numel()
        nz += int((w == 0).sum())
    return nz / max(1, tot)


# --------------------------------------------------------------------------- structured
def _channel_scores(model, group: ChannelGroup, saliency: str, grads_ready: bool):
    import torch
    mods = dict(model.named_modules())
    score = torch.zeros(group.channels)
    for p in group.producers:
        m = mods[p]
        w = m.weight.detach().reshape(m.weight.shape[0], -1)
        if saliency == "l1":
            s = w.abs().sum(1)
        elif saliency == "l2":
            s = w.pow(2).sum(1).sqrt()
        elif saliency == "taylor":
            g = m.weight.grad
            g = torch.zeros_like(m.weight) if g is None else g
            s = (m.weight.detach() * g).reshape(w.shape).sum(1).abs()
            if m.bias is not None and m.bias.grad is not None:
                s = s + (m.bias.detach() * m.bias.grad).abs()
        else:
            raise ModelError(f"unknown saliency {saliency!r}", "structured_prune", "Use 'l1', 'l2' or 'taylor'")
        score += s / (s.sum() + 1e-12)  # normalize so producers of a residual group weigh equally
    return score


def structured_prune(model, example_input, amount: float | dict[str, float], *, saliency: str = "l1",
                     x=None, y=None, round_to: int = 1, min_channels: int = 1, inplace: bool = False,
                     verbose: bool = False):
    """Remove the ``amount`` least salient output channels of every prunable group.

    ``amount`` is one fraction for all groups, or a dict {producer name: fraction}
    (groups not named are left alone).  ``saliency``: ``"l1"``/``"l2"`` filter norm,
    or ``"taylor"`` |sum(w * dL/dw)| per channel (needs ``x``, ``y``).  Returns the
    pruned model (a copy unless ``inplace``) with physically smaller layers.
    """
    import torch
    if not inplace:
        model = copy.deepcopy(model)
    groups = channel_groups(model, example_input)
    if saliency == "taylor":
        if x is None or y is None:
            raise ModelError("Taylor saliency needs data", "structured_prune", "Pass x=..., y=... (a few batches)")
        _grads(model, x, y)
    changed = 0
    plans = []
    for g in groups:
        a = amount if isinstance(amount, (int, float)) else next(
            (amount[p] for p in g.producers if p in amount), 0.0)
        _check_amount(a, f"structured_prune group {g.name}")
        if g.locked or a <= 0:
            if verbose and a > 0:
                print(f"  skip {g.name}: {g.locked}", file=sys.stderr)
            continue
        n_keep = max(min_channels, int(round(g.channels * (1.0 - a))))
        step = g.blocks * round_to // math.gcd(g.blocks, round_to)  # whole blocks, multiples of round_to
        if step > g.channels or g.channels % step:
            step = g.blocks
        if step > 1:
            n_keep = max(step, int(math.ceil(n_keep / step)) * step)
        n_keep = min(n_keep, g.channels)
        if n_keep == g.channels:
            continue
        # score every group on the unpruned weights (and gradients) before slicing anything:
        # slicing a consumer's input replaces its parameter and drops its gradient
        score = _channel_scores(model, g, saliency, True)
        if g.blocks > 1:  # the same number of the most salient channels in every block
            size, per = g.channels // g.blocks, n_keep // g.blocks
            keep = torch.cat([b * size + torch.argsort(score[b * size:(b + 1) * size], descending=True)[:per]
                              for b in range(g.blocks)])
            plans.append((g, torch.sort(keep).values))
        else:
            plans.append((g, torch.sort(torch.argsort(score, descending=True)[:n_keep]).values))
    for g, keep in plans:
        _apply_keep(model, g, keep)
        changed += 1
        if verbose:
            print(f"  {g.name}: {g.channels} -> {len(keep)} channels", file=sys.stderr)
    model.zero_grad(set_to_none=True)
    if changed == 0 and verbose:
        print("  structured_prune: nothing pruned (all groups locked or amount 0)", file=sys.stderr)
    return model


def iterative_prune(model, x, y, *, final_amount: float, steps: int = 3, epochs_per_step: int = 2,
                    method: str = "structured", saliency: str = "l1", example_input=None, lr: float = 1e-3,
                    x_val=None, y_val=None, seed: int = 0, verbose: bool = True, teacher=None,
                    temperature: float = 4.0, alpha: float = 0.7, round_to: int = 1, task=None,
                    callback: Callable[[int, Any], None] | None = None):
    """Prune in ``steps`` equal geometric steps to ``final_amount``, fine-tuning after each.

    ``method``: ``"structured"`` (channels removed), ``"magnitude"`` / ``"magnitude-global"``
    or ``"taylor"`` (unstructured masks, made permanent at the end).  Progress goes to stderr.
    ``teacher`` (e.g. the unpruned model) turns each fine-tune into distillation; ``round_to``
    keeps structured channel counts multiples of it (4 on cores whose kernels take channels in
    fours); ``task`` picks the loss (:class:`edgecomp.compress.task.Task`, classification by default).
    """
    from .distill import accuracy, fit
    _check_amount(final_amount, "iterative_prune")
    if steps < 1:
        raise ModelError(f"steps must be >= 1, got {steps}", "iterative_prune", "Use e.g. steps=3")
    keep_final = 1.0 - final_amount
    model = copy.deepcopy(model)
    for s in range(1, steps + 1):
        cum = 1.0 - keep_final ** (s / steps)  # fraction pruned after this step (of the original)
        if method == "structured":
            step_amount = 1.0 - keep_final ** (1.0 / steps)
            model = structured_prune(model, example_input if example_input is not None else x[:1], step_amount,
                                     saliency=saliency, x=x, y=y, inplace=True,
                                     round_to=round_to if s == steps else 1)
        elif method in ("magnitude", "magnitude-global"):
            make_permanent(model)
            # re-prune to the cumulative fraction of all weights (already-zero ones stay smallest)
            magnitude_prune(model, cum, scope="global" if method.endswith("global") else "layer")
        elif method == "taylor":
            make_permanent(model)
            taylor_prune(model, cum, x, y)
        else:
            raise ModelError(f"unknown pruning method {method!r}", "iterative_prune",
                             "Use structured, magnitude, magnitude-global or taylor")
        fit(model, x, y, epochs=epochs_per_step, lr=lr, seed=seed + s, verbose=False, teacher=teacher,
            temperature=temperature, alpha=alpha, task=task)
        if verbose:
            n = sum(p.numel() for p in model.parameters())
            msg = f"  [prune {method}] step {s}/{steps}: {cum * 100:.0f} % pruned, {n:,} params"
            if method != "structured":
                msg += f", sparsity {sparsity(model) * 100:.1f} %"
            if x_val is not None:
                msg += f", val acc {accuracy(model, x_val, y_val) * 100:.2f} %"
            print(msg, file=sys.stderr, flush=True)
        if callback is not None:
            callback(s, model)
    if method != "structured":
        make_permanent(model)
    return model
