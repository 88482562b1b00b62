"""Axis helpers of the reduction ops, shared by their semantics (:mod:`edgecomp.ops.reduce`), the
requantization pass and the C emitters: which IR axes a node reduces, how many values an output
sums, and the walk the C kernels take (runs of kept and reduced axes)."""
from __future__ import annotations

import math

from . import ir
from .errors import UnsupportedError

MAX_GROUPS = 3  # kept and reduced groups of axes a C kernel walks (EC_REDUCE_GROUPS)


def reduced_axes(node: ir.Node, rank: int) -> tuple[int, ...]:
    """The node's reduced IR axes, sorted and non-negative (``axes`` or a single ``axis``)."""
    raw = node.attrs["axes"] if "axes" in node.attrs else (node.attrs["axis"],)
    axes = tuple(sorted({int(a) % rank for a in raw}))
    if 0 in axes:
        raise UnsupportedError(f"{node.op} over the batch axis", where=f"node {node.name!r}",
                               fix="Reduce over the other axes (edgecomp runs one batch row at a time)")
    return axes


def geometry(shape: tuple[int, ...], axes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(kept, reduced): runs of consecutive axes of one kind merged, each a (size, element stride)
    pair in memory order; unit axes are dropped.  The output holds the kept runs in this order.

    >>> geometry((1, 4, 5, 8), (1, 2))    # NHWC spatial mean: [batch], pixels x 8 channels
    ([(8, 1)], [(20, 8)])
    >>> geometry((2, 3, 4, 5), (1, 3))
    ([(2, 60), (4, 5)], [(3, 20), (5, 1)])
    """
    strides = [int(math.prod(shape[i + 1:])) for i in range(len(shape))]
    runs: list[list] = []  # [kind, size, stride]
    for i, d in enumerate(shape):
        if d == 1:
            continue
        kind = i in axes
        if runs and runs[-1][0] == kind and runs[-1][2] == d * strides[i]:
            runs[-1][1] *= d
            runs[-1][2] = strides[i]
        else:
            runs.append([kind, d, strides[i]])
    kept = [(r[1], r[2]) for r in runs if not r[0]]
    red = [(r[1], r[2]) for r in runs if r[0]]
    return kept, red


def count(shape: tuple[int, ...], axes) -> int:
    """How many values each output of a reduction over ``axes`` sums."""
    return int(math.prod(shape[a] for a in axes))
