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
The dependency analysis is a ``torch.fx`` trace plus shape propagation, so the
exported ONNX, and the C generated from it, really are smaller and faster.
"""
from __future__ import annotations

import copy
import math
import operator
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import ModelError, UnsupportedError

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
_PASS_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid", "SiLU", "GELU",
                 "ELU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout",
                 "Dropout2d", "Identity", "MaxPool1d", "AvgPool1d")


@dataclass
class ChannelGroup:
    """Output channels shared by ``producers`` (conv/linear names) that must be pruned together."""
    channels: int
    producers: list[str] = field(default_factory=list)
    carriers: list[tuple[str, str]] = field(default_factory=list)  # (module, "bn" | "dw")
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (module, features per channel)
    locked: str | None = None  # why it cannot be pruned

    @property
    def name(self) -> str:
        return "+".join(self.producers)


class _UF:
    def __init__(self):
        self.p = {}

    def find(self, a):
        self.p.setdefault(a, a)
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[rb] = ra
        return ra


def channel_groups(model, example_input) -> list[ChannelGroup]:
    """Trace ``model`` and return its channel groups (locked ones say why they cannot be pruned)."""
    import torch
    import torch.fx as fx
    import torch.nn as nn
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:
        raise UnsupportedError(f"cannot trace the model for structured pruning: {str(e).splitlines()[0]}",
                               type(model).__name__,
                               "Use a model without data-dependent control flow, or prune unstructured") from None
    ex = example_input if isinstance(example_input, torch.Tensor) else torch.from_numpy(np.asarray(example_input))
    was = model.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(ex.float())
    model.train(was)
    mods = dict(gm.named_modules())
    uf = _UF()
    info: dict[str, dict] = {}  # group id -> data
    tag: dict[Any, tuple[str, int] | None] = {}  # fx node -> (group id, features per channel)
    locks: dict[str, str] = {}
    members: dict[str, dict] = {}

    def new_group(producer: str, ch: int) -> str:
        gid = producer
        uf.find(gid)
        members[gid] = {"channels": ch, "producers": [producer], "carriers": [], "consumers": []}
        return gid

    def shape(n):
        tm = n.meta.get("tensor_meta")
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    def lock(t, why):
        if t is not None:
            locks.setdefault(uf.find(t[0]), why)

    def args_nodes(n):
        return [a for a in n.all_input_nodes]

    for n in gm.graph.nodes:
        ins = args_nodes(n)
        t_in = tag.get(ins[0]) if ins else None
        if n.op == "placeholder":
            tag[n] = None
        elif n.op == "output":
            for a in ins:
                lock(tag.get(a), "feeds the model output")
        elif n.op == "call_module":
            m = mods[n.target]
            kind = type(m).__name__
            if isinstance(m, (nn.Conv2d, nn.Conv1d)) and m.groups == 1:
                if t_in is not None:
                    members[uf.find(t_in[0])]["consumers"].append((n.target, t_in[1]))
                tag[n] = (new_group(n.target, m.out_channels), 1)
            elif isinstance(m, (nn.Conv2d, nn.Conv1d)) and m.groups == m.in_channels == m.out_channels:
                if t_in is None:
                    tag[n] = None
                else:
                    members[uf.find(t_in[0])]["carriers"].append((n.target, "dw"))
                    tag[n] = t_in
            elif isinstance(m, nn.Linear):
                s = shape(ins[0]) if ins else None
                if t_in is not None and s is not None and len(s) == 2:
                    members[uf.find(t_in[0])]["consumers"].append((n.target, t_in[1]))
                elif t_in is not None:
                    lock(t_in, f"reaches {n.target} (Linear on a >2-D tensor)")
                tag[n] = (new_group(n.target, m.out_features), 1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                if t_in is not None:
                    members[uf.find(t_in[0])]["carriers"].append((n.target, "bn"))
                tag[n] = t_in
            elif kind in _PASS_MODULES or isinstance(m, nn.Flatten):
                if isinstance(m, nn.Flatten) and t_in is not None:
                    s = shape(ins[0])
                    if m.start_dim != 1 or s is None or len(s) < 2:
                        lock(t_in, f"reshaped by {n.target}")
                        tag[n] = None
                    else:
                        tag[n] = (t_in[0], t_in[1] * int(np.prod(s[2:])))
                else:
                    tag[n] = t_in
            else:
                for a in ins:
                    lock(tag.get(a), f"reaches {n.target} ({kind}), which structured pruning does not know")
                tag[n] = None
        elif n.op in ("call_function", "call_method"):
            fn = n.target
            name = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
            if name in ("add", "sub", "mul", "iadd", "__add__", "__iadd__") or fn in (operator.add, operator.sub,
                                                                                       operator.mul, torch.add):
                ts = [tag.get(a) for a in ins]
                tensor_ins = [a for a in ins if shape(a) is not None]
                if len(tensor_ins) >= 2:
                    shapes = [shape(a) for a in tensor_ins]
                    if any(s != shapes[0] for s in shapes) or any(t is None for t in ts) or \
                            len({t[1] for t in ts}) != 1:
                        for t in ts:
                            lock(t, f"combined by {n.name} with a tensor whose channels are not prunable")
                        tag[n] = None
                    else:
                        root = ts[0][0]
                        for t in ts[1:]:
                            ra, rb = uf.find(root), uf.find(t[0])
                            if ra != rb:
                                ma, mb = members[ra], members[rb]
                                r = uf.union(ra, rb)
                                keep, gone = (ma, mb) if r == ra else (mb, ma)
                                for k in ("producers", "carriers", "consumers"):
                                    keep[k] += gone[k]
                                if rb in locks or ra in locks:
                                    locks[r] = locks.get(ra) or locks.get(rb)
                        tag[n] = ts[0]
                else:
                    tag[n] = t_in
            elif name in ("relu", "relu6", "sigmoid", "tanh", "dropout", "hardtanh", "leaky_relu", "max_pool2d",
                          "avg_pool2d", "adaptive_avg_pool2d", "silu", "gelu", "contiguous", "clamp", "hardswish"):
                tag[n] = t_in
            elif name == "flatten" or name in ("view", "reshape"):
                s = shape(ins[0]) if ins else None
                so = shape(n)
                ok = t_in is not None and s is not None and so is not None and len(so) == 2 and so[0] == s[0]
                if name == "flatten":
                    sd = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
                    ok = ok and sd == 1
                if ok:
                    tag[n] = (t_in[0], t_in[1] * int(np.prod(s[2:])))
                else:
                    if t_in is not None and not (so is not None and s is not None and so == s):
                        lock(t_in, f"reshaped by {n.name}")
                    tag[n] = t_in if (so is not None and so == s) else None
            elif name == "mean" and shape(n) is not None and shape(ins[0]) is not None and t_in is not None \
                    and len(shape(n)) == 2 and len(shape(ins[0])) == 4 and t_in[1] == 1 \
                    and shape(n)[1] == shape(ins[0])[1]:
                tag[n] = t_in  # global average pooling: [N, C, H, W] -> [N, C]
            elif name in ("size", "dim", "getattr"):
                tag[n] = None
            else:
                for a in ins:
                    lock(tag.get(a), f"reaches {n.name} ({name}), which structured pruning does not know")
                tag[n] = None
        else:
            tag[n] = None
    groups = []
    for gid, d in members.items():
        if uf.find(gid) != gid:
            continue
        g = ChannelGroup(d["channels"], d["producers"], d["carriers"], d["consumers"], locks.get(gid))
        if g.locked is None and not g.consumers:
            g.locked = "no layer consumes these channels"
        groups.append(g)
    return groups


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


def _slice_param(p, idx, dim):
    import torch
    return torch.nn.Parameter(p.detach().index_select(dim, idx).clone(), requires_grad=p.requires_grad)


def _apply_keep(model, group: ChannelGroup, keep) -> None:
    import torch
    import torch.nn as nn
    mods = dict(model.named_modules())
    for p in group.producers:
        m = mods[p]
        m.weight = _slice_param(m.weight, keep, 0)
        if m.bias is not None:
            m.bias = _slice_param(m.bias, keep, 0)
        if isinstance(m, nn.Linear):
            m.out_features = len(keep)
        else:
            m.out_channels = len(keep)
    for name, kind in group.carriers:
        m = mods[name]
        if kind == "bn":
            m.weight = _slice_param(m.weight, keep, 0) if m.weight is not None else None
            m.bias = _slice_param(m.bias, keep, 0) if m.bias is not None else None
            if m.running_mean is not None:
                m.running_mean = m.running_mean.index_select(0, keep).clone()
                m.running_var = m.running_var.index_select(0, keep).clone()
            m.num_features = len(keep)
        else:  # depthwise conv carries the channels through
            m.weight = _slice_param(m.weight, keep, 0)
            if m.bias is not None:
                m.bias = _slice_param(m.bias, keep, 0)
            m.in_channels = m.out_channels = m.groups = len(keep)
    for name, per in group.consumers:
        m = mods[name]
        idx = keep if per == 1 else (keep[:, None] * per + torch.arange(per)[None, :]).reshape(-1)
        m.weight = _slice_param(m.weight, idx, 1)
        if isinstance(m, nn.Linear):
            m.in_features = len(idx)
        else:
            m.in_channels = len(idx)


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
        if round_to > 1:
            n_keep = max(round_to, int(math.ceil(n_keep / round_to)) * round_to)
        n_keep = min(n_keep, g.channels)
        if n_keep == g.channels:
            continue
        # score every group on the unpruned weights (and gradients) before slicing anything:
        # slicing a consumer's input replaces its parameter and drops its gradient
        score = _channel_scores(model, g, saliency, True)
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
