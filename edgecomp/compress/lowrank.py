"""Low-rank factorization by truncated SVD.

* ``Linear(in, out)``  ->  ``Linear(in, r, bias=False)`` then ``Linear(r, out)``
* ``Conv2d(cin, cout, k x k)`` (groups=1)  ->  ``Conv2d(cin, r, k x k, bias=False)``
  (same stride/padding/dilation) then ``Conv2d(r, cout, 1x1)``

With ``W = U S V^T`` (conv weights reshaped to ``[cout, cin*k*k]``) the first layer
gets ``sqrt(S) V^T`` and the second ``U sqrt(S)``; at full rank the product is
``W`` (exact up to float rounding).  The rank is picked per layer by retained
energy (``sum S_i^2`` over the kept singular values) or by a parameter ratio, and
a layer is only factored when that saves parameters.  Fine-tune afterwards with
:func:`edgecomp.compress.distill.fit`.
"""
from __future__ import annotations

import copy
import sys

from ..errors import ModelError, UnsupportedError

__all__ = ["svd_factor", "choose_rank", "factorize", "factorizable_layers"]


def _params_factored(m, r: int) -> int:
    import torch.nn as nn
    if isinstance(m, nn.Linear):
        return r * m.in_features + m.out_features * r + (m.out_features if m.bias is not None else 0)
    k = m.kernel_size[0] * m.kernel_size[1]
    return r * m.in_channels * k + m.out_channels * r + (m.out_channels if m.bias is not None else 0)


def _weight_matrix(m):
    return m.weight.detach().reshape(m.weight.shape[0], -1).double()


def choose_rank(m, *, energy: float | None = None, ratio: float | None = None) -> int:
    """Smallest rank keeping ``energy`` of the squared singular values, or the largest
    rank whose factored parameter count is <= ``ratio`` x the original."""
    import torch
    W = _weight_matrix(m)
    full = min(W.shape)
    if energy is not None:
        if not 0.0 < energy <= 1.0:
            raise ModelError(f"energy must be in (0, 1], got {energy}", "lowrank", "Use e.g. energy=0.9")
        s2 = torch.linalg.svdvals(W) ** 2
        cum = torch.cumsum(s2, 0) / s2.sum().clamp_min(1e-30)
        return min(full, int((cum < energy - 1e-12).sum()) + 1)
    if ratio is not None:
        if not 0.0 < ratio <= 1.0:
            raise ModelError(f"ratio must be in (0, 1], got {ratio}", "lowrank", "Use e.g. ratio=0.5")
        orig = sum(p.numel() for p in m.parameters())
        r = full
        while r > 1 and _params_factored(m, r) > ratio * orig:
            r -= 1
        return r
    raise ModelError("give a rank criterion", "lowrank", "Pass energy=0.9 or ratio=0.5")


def svd_factor(m, rank: int):
    """Return an ``nn.Sequential`` of two layers equal to ``m`` at full rank."""
    import torch
    import torch.nn as nn
    W = _weight_matrix(m)
    if not 1 <= rank <= min(W.shape):
        raise ModelError(f"rank {rank} is outside 1..{min(W.shape)}", type(m).__name__, "Choose a smaller rank")
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    sq = S[:rank].sqrt()
    A = (sq[:, None] * Vh[:rank]).float()  # [r, in]
    B = (U[:, :rank] * sq[None, :]).float()  # [out, r]
    if isinstance(m, nn.Linear):
        first = nn.Linear(m.in_features, rank, bias=False)
        second = nn.Linear(rank, m.out_features, bias=m.bias is not None)
        first.weight.data.copy_(A)
        second.weight.data.copy_(B)
    elif isinstance(m, nn.Conv2d) and m.groups == 1:
        first = nn.Conv2d(m.in_channels, rank, m.kernel_size, stride=m.stride, padding=m.padding,
                          dilation=m.dilation, bias=False, padding_mode=m.padding_mode)
        second = nn.Conv2d(rank, m.out_channels, 1, bias=m.bias is not None)
        first.weight.data.copy_(A.reshape(rank, *m.weight.shape[1:]))
        second.weight.data.copy_(B.reshape(m.out_channels, rank, 1, 1))
    else:
        raise UnsupportedError(f"cannot factor {type(m).__name__}", type(m).__name__,
                               "Low-rank factorization handles Linear and non-grouped Conv2d")
    if m.bias is not None:
        second.bias.data.copy_(m.bias.detach())
    return nn.Sequential(first, second)


def factorizable_layers(model):
    import torch.nn as nn
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]


def factorize(model, *, energy: float | None = None, ratio: float | None = None, layers=None,
              skip_last: bool = True, min_params: int = 256, inplace: bool = False, verbose: bool = False):
    """Replace Linear/Conv2d layers by their truncated SVD where that saves parameters.

    ``layers`` limits it to those module names; ``skip_last`` leaves the output layer
    alone (it is tiny and most sensitive).  Returns (model, {name: (rank, full_rank)}).
    """
    if not inplace:
        model = copy.deepcopy(model)
    cands = factorizable_layers(model)
    if skip_last and cands and layers is None:
        cands = cands[:-1]
    done = {}
    for name, m in cands:
        if layers is not None and name not in layers:
            continue
        orig = sum(p.numel() for p in m.parameters())
        if orig < min_params:
            continue
        r = choose_rank(m, energy=energy, ratio=ratio)
        full = min(_weight_matrix(m).shape)
        if _params_factored(m, r) >= orig:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, svd_factor(m, r))
        done[name] = (r, full)
        if verbose:
            print(f"  lowrank {name}: rank {r}/{full}, params {orig:,} -> {_params_factored(m, r):,}",
                  file=sys.stderr)
    return model, done
