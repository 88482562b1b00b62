"""Channel dependency analysis for structured pruning: which output channels must go together.

A ``torch.fx`` trace plus shape propagation follows every tensor's channels.  A tensor's *layout* is
a list of segments ``(group, features per channel, fixed count)``: one segment for a layer's output,
several after a ``torch.cat`` along channels (a segment of fixed channels for an input nobody may
prune, e.g. the image).  Producers (conv / linear) start a group; batch norm and depthwise convs
*carry* a group's channels; convs and linears *consume* them (their input slice at the segment's
offset, ``features per channel`` wide after a flatten); element-wise add / sub / mul unite the groups
of their operands; grouped convolutions (``1 < groups``) consume their input in ``groups`` equal
blocks, so a group they read (and the grouped conv's own outputs) keeps the same number of channels
in each block (``ChannelGroup.blocks``).  Anything else that reads a group locks it, with the reason.

:func:`apply_keep` slices every tensor the group touches; offsets of concatenated segments are
computed from the current channel counts, so groups can be pruned one after another.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedError

__all__ = ["ChannelGroup", "channel_groups", "apply_keep", "PASS_MODULES"]

PASS_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid", "SiLU", "GELU",
                "ELU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout",
                "Dropout2d", "Identity", "MaxPool1d", "AvgPool1d")
_PASS_FUNCS = ("relu", "relu6", "sigmoid", "tanh", "dropout", "hardtanh", "leaky_relu", "max_pool2d", "avg_pool2d",
               "adaptive_avg_pool2d", "silu", "gelu", "contiguous", "clamp", "hardswish")


@dataclass
class ChannelGroup:
    """Output channels shared by ``producers`` (conv/linear names) that must be pruned together."""
    channels: int
    producers: list[str] = field(default_factory=list)
    carriers: list[tuple[str, str]] = field(default_factory=list)  # (module, "bn" | "dw"), whole tensor
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (module, features per channel), whole input
    locked: str | None = None  # why it cannot be pruned
    blocks: int = 1  # equal blocks that must keep the same number of channels (grouped convolutions)
    seg_carriers: list[tuple] = field(default_factory=list)  # (module, kind, layout, index): part of a concat
    seg_consumers: list[tuple] = field(default_factory=list)  # (module, layout, index): part of a concat
    grouped: list[tuple[str, int]] = field(default_factory=list)  # (grouped conv reading the group, groups)

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


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


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
    members: dict[str, dict] = {}
    locks: dict[str, str] = {}
    tag: dict[Any, list | None] = {}  # fx node -> layout [(group id or None, per, fixed count)]

    def new_group(producer: str, ch: int, blocks: int = 1) -> list:
        uf.find(producer)
        members[producer] = {"channels": ch, "producers": [producer], "carriers": [], "consumers": [],
                             "seg_carriers": [], "seg_consumers": [], "grouped": [], "blocks": blocks}
        return [(producer, 1, 0)]

    def m_of(gid):
        return members[uf.find(gid)]

    def shape(n):
        tm = n.meta.get("tensor_meta") if hasattr(n, "meta") else None
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    def lock(t, why):
        for gid, _, _ in (t or []):
            if gid is not None:
                locks.setdefault(uf.find(gid), why)

    def single(t):
        return t is not None and len(t) == 1 and t[0][0] is not None

    def consume(t, target):
        if t is None:
            return
        if single(t):
            m_of(t[0][0])["consumers"].append((target, t[0][1]))
            return
        for i, (gid, _, _) in enumerate(t):
            if gid is not None:
                m_of(gid)["seg_consumers"].append((target, t, i))

    def carry(t, target, kind):
        if t is None:
            return
        if single(t) and t[0][1] == 1:
            m_of(t[0][0])["carriers"].append((target, kind))
            return
        if any(per != 1 for _, per, _ in t):
            lock(t, f"reaches {target} after a reshape")
            return
        for i, (gid, _, _) in enumerate(t):
            if gid is not None:
                m_of(gid)["seg_carriers"].append((target, kind, t, i))

    def unite(ts, n):
        """Element-wise ops: operands with the same layout share their groups."""
        if any(t is None for t in ts) or any(len(t) != len(ts[0]) for t in ts) or any(
                (a[1], a[2] if a[0] is None else None) != (b[1], b[2] if b[0] is None else None)
                or (a[0] is None) != (b[0] is None) for t in ts[1:] for a, b in zip(ts[0], t)):
            for t in ts:
                lock(t, f"combined by {n.name} with a tensor whose channels are not prunable alike")
            return None
        for t in ts[1:]:
            for a, b in zip(ts[0], t):
                if a[0] is None:
                    continue
                ra, rb = uf.find(a[0]), uf.find(b[0])
                if ra == rb:
                    continue
                ma, mb = members[ra], members[rb]
                uf.p[rb] = ra
                for k in ("producers", "carriers", "consumers", "seg_carriers", "seg_consumers", "grouped"):
                    ma[k] += mb[k]
                ma["blocks"] = _lcm(ma["blocks"], mb["blocks"])
                if rb in locks or ra in locks:
                    locks[ra] = locks.get(ra) or locks.get(rb)
        return ts[0]

    def flat(t, s, n):
        if t is None:
            return None
        hw = int(np.prod(s[2:]))
        return [(gid, per * hw, fixed) for gid, per, fixed in t]

    for n in gm.graph.nodes:
        ins = list(n.all_input_nodes)
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
                consume(t_in, n.target)
                tag[n] = new_group(n.target, m.out_channels)
            elif isinstance(m, (nn.Conv2d, nn.Conv1d)) and m.groups == m.in_channels == m.out_channels:
                carry(t_in, n.target, "dw")
                tag[n] = t_in
            elif isinstance(m, (nn.Conv2d, nn.Conv1d)):  # grouped (or depthwise with a multiplier)
                if t_in is not None:
                    if single(t_in) and t_in[0][1] == 1:
                        g = m_of(t_in[0][0])
                        g["grouped"].append((n.target, m.groups))
                        g["blocks"] = _lcm(g["blocks"], m.groups)
                    else:
                        lock(t_in, f"reaches grouped convolution {n.target} through a concatenation or reshape")
                tag[n] = new_group(n.target, m.out_channels, blocks=m.groups)
            elif isinstance(m, nn.Linear):
                s = shape(ins[0]) if ins else None
                if t_in is not None and s is not None and len(s) == 2:
                    consume(t_in, n.target)
                elif t_in is not None:
                    lock(t_in, f"reaches {n.target} (Linear on a >2-D tensor)")
                tag[n] = new_group(n.target, m.out_features)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                carry(t_in, n.target, "bn")
                tag[n] = t_in
            elif isinstance(m, nn.Flatten):
                s = shape(ins[0])
                if t_in is not None and (m.start_dim != 1 or s is None or len(s) < 2):
                    lock(t_in, f"reshaped by {n.target}")
                    tag[n] = None
                else:
                    tag[n] = flat(t_in, s, n) if t_in is not None else None
            elif kind in PASS_MODULES:
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
                tensor_ins = [a for a in ins if shape(a) is not None]
                if len(tensor_ins) >= 2:
                    shapes = [shape(a) for a in tensor_ins]
                    if any(s != shapes[0] for s in shapes):
                        for a in tensor_ins:
                            lock(tag.get(a), f"broadcast by {n.name}")
                        tag[n] = None
                    else:
                        tag[n] = unite([tag.get(a) for a in tensor_ins], n)
                else:
                    tag[n] = t_in
            elif name == "cat" and fn is torch.cat:
                parts = n.args[0] if n.args else n.kwargs.get("tensors", [])
                dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
                so = shape(n)
                if so is not None and dim < 0:
                    dim += len(so)
                if dim != 1 or so is None:
                    for a in ins:
                        lock(tag.get(a), f"concatenated along dimension {dim} by {n.name}")
                    tag[n] = None
                else:
                    layout = []
                    for a in parts:
                        t = tag.get(a)
                        layout += t if t is not None else [(None, 1, int(shape(a)[1]))]
                    gids = [gid for gid, _, _ in layout if gid is not None]
                    if len({uf.find(g) for g in gids}) != len(gids):
                        lock(layout, f"concatenated with itself by {n.name}")
                        tag[n] = None
                    else:
                        tag[n] = layout
            elif name in _PASS_FUNCS:
                tag[n] = t_in
            elif name == "flatten" or name in ("view", "reshape"):
                s = shape(ins[0]) if ins else None
                so = shape(n)
                ok = t_in is not None and s is not None and so is not None and len(so) == 2 and so[0] == s[0]
                if name == "flatten":
                    sd = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
                    ok = ok and sd == 1
                if ok:
                    tag[n] = flat(t_in, s, n)
                else:
                    if t_in is not None and not (so is not None and s is not None and so == s):
                        lock(t_in, f"reshaped by {n.name}")
                    tag[n] = t_in if (so is not None and so == s) else None
            elif name == "mean" and shape(n) is not None and shape(ins[0]) is not None and t_in is not None \
                    and len(shape(n)) == 2 and len(shape(ins[0])) == 4 and all(p == 1 for _, p, _ in t_in) \
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
        g = ChannelGroup(d["channels"], d["producers"], d["carriers"], d["consumers"], locks.get(gid), d["blocks"],
                         d["seg_carriers"], d["seg_consumers"], d["grouped"])
        if g.locked is None and not (g.consumers or g.seg_consumers or g.grouped):
            g.locked = "no layer consumes these channels"
        if g.locked is None and g.channels % g.blocks:
            g.locked = f"{g.channels} channels do not split into {g.blocks} equal blocks"
        groups.append(g)
    return groups


def _count(mods, gid, fixed) -> int:
    """The current channels of a layout segment (its group's producer, or the fixed count)."""
    if gid is None:
        return fixed
    m = mods[gid]
    return int(m.weight.shape[0])


def _segment_index(mods, layout, index, keep, size: int):
    """Indices along a dimension of ``size`` keeping segment ``index`` of ``layout`` at ``keep`` and
    every other position."""
    import torch
    off = sum(_count(mods, gid, fixed) * per for gid, per, fixed in layout[:index])
    gid, per, _ = layout[index]
    c_old = _count(mods, gid, 0)
    sub = keep if per == 1 else (keep[:, None] * per + torch.arange(per)[None, :]).reshape(-1)
    return torch.cat([torch.arange(off), off + sub, torch.arange(off + c_old * per, size)]).long()


def _slice(p, idx, dim):
    import torch
    return torch.nn.Parameter(p.detach().index_select(dim, idx).clone(), requires_grad=p.requires_grad)


def _slice_carrier(m, kind, idx) -> None:
    if kind == "bn":
        m.weight = _slice(m.weight, idx, 0) if m.weight is not None else None
        m.bias = _slice(m.bias, idx, 0) if m.bias is not None else None
        if m.running_mean is not None:
            m.running_mean = m.running_mean.index_select(0, idx).clone()
            m.running_var = m.running_var.index_select(0, idx).clone()
        m.num_features = len(idx)
    else:  # a depthwise conv carries the channels through
        m.weight = _slice(m.weight, idx, 0)
        if m.bias is not None:
            m.bias = _slice(m.bias, idx, 0)
        m.in_channels = m.out_channels = m.groups = len(idx)


def _slice_input(m, idx) -> None:
    import torch.nn as nn
    m.weight = _slice(m.weight, idx, 1)
    if isinstance(m, nn.Linear):
        m.in_features = len(idx)
    else:
        m.in_channels = len(idx)


def apply_keep(model, group: ChannelGroup, keep) -> None:
    """Keep the channels ``keep`` (sorted indices) of ``group`` in every tensor it touches."""
    import torch
    import torch.nn as nn
    mods = dict(model.named_modules())
    # segment offsets read the current channel counts: compute every index before slicing anything
    seg_car = [(mods[name], kind, _segment_index(mods, layout, i, keep, int(mods[name].weight.shape[0])))
               for name, kind, layout, i in group.seg_carriers]
    seg_con = [(mods[name], _segment_index(mods, layout, i, keep, int(mods[name].weight.shape[1])))
               for name, layout, i in group.seg_consumers]
    for p in group.producers:
        m = mods[p]
        m.weight = _slice(m.weight, keep, 0)
        if m.bias is not None:
            m.bias = _slice(m.bias, keep, 0)
        if isinstance(m, nn.Linear):
            m.out_features = len(keep)
        else:
            m.out_channels = len(keep)
    for name, kind in group.carriers:
        _slice_carrier(mods[name], kind, keep)
    for m, kind, idx in seg_car:
        _slice_carrier(m, kind, idx)
    for name, per in group.consumers:
        idx = keep if per == 1 else (keep[:, None] * per + torch.arange(per)[None, :]).reshape(-1)
        _slice_input(mods[name], idx)
    for m, idx in seg_con:
        _slice_input(m, idx)
    for name, groups in group.grouped:  # each conv group reads its own block of the kept channels
        m = mods[name]
        cpg_in = group.channels // groups  # channels per block before pruning
        cpg_out = m.out_channels // groups
        rows = []
        for gi in range(groups):
            k = keep[(keep // cpg_in) == gi] - gi * cpg_in
            rows.append(m.weight.detach()[gi * cpg_out:(gi + 1) * cpg_out].index_select(1, k))
        m.weight = torch.nn.Parameter(torch.cat(rows, 0).clone(), requires_grad=m.weight.requires_grad)
        m.in_channels = len(keep)
