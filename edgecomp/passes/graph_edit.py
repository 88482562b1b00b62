"""Small edits every rewrite pass needs: rename a tensor, redirect its readers, drop dead nodes."""
from __future__ import annotations

import numpy as np

from .. import ir


def same_quant(a: ir.QuantParams | None, b: ir.QuantParams | None) -> bool:
    return a is not None and b is not None and np.array_equal(a.scale, b.scale) and \
        np.array_equal(a.zero_point, b.zero_point)


def replace_uses(g: ir.Graph, old: str, new: str) -> None:
    """Every reader of ``old`` (and the graph outputs) reads ``new`` instead."""
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    g.outputs = [new if o == old else o for o in g.outputs]


def rename(g: ir.Graph, old: str, new: str) -> None:
    """Give tensor ``old`` the name ``new`` (graph inputs/outputs keep their model names)."""
    t = g.tensors.pop(old)
    t.name = new
    g.tensors[new] = t
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        n.outputs = [new if o == old else o for o in n.outputs]
    g.outputs = [new if o == old else o for o in g.outputs]


def remove_dead(g: ir.Graph, ctx=None) -> ir.Graph:
    """Drop nodes whose outputs nobody reads and tensors nobody mentions."""
    changed = True
    while changed:
        changed = False
        used = set(g.outputs) | {i for n in g.nodes for i in n.inputs}
        for n in list(g.nodes):
            if not any(o in used for o in n.outputs):
                g.nodes.remove(n)
                changed = True
        live = used | {o for n in g.nodes for o in n.outputs} | set(g.inputs)
        for name in list(g.tensors):
            if name not in live:
                del g.tensors[name]
    return g


def working_copy(graph: ir.Graph) -> ir.Graph:
    """A copy passes may edit (nodes, their attrs, the tensor table and meta are new objects; the
    tensors and constant arrays are shared): the caller's graph stays as it was."""
    import copy

    g = copy.copy(graph)
    g.nodes = [copy.copy(n) for n in graph.nodes]
    for n in g.nodes:
        n.attrs = dict(n.attrs)
    g.tensors = dict(graph.tensors)
    g.meta = dict(graph.meta)
    return g
