"""Activation fusion: a ``clamp`` folded into the op that produces its input.

``y = op(x); z = clamp(y)`` becomes ``z = op(x)`` with ``op.attrs["act"]`` narrowed to the
clamp's range, when ``y`` has no other reader and is not a graph output.  Float clamps (Relu,
Clip in a float graph) fold into any op that takes a fused activation; an int16 clamp (ONNX
Runtime keeps Relu/Clip as their own QDQ islands when activations are symmetric) folds only
when it has the producer's quantization, so the clamp range means the same integers.  int8
clamps stay nodes (their own QDQ island has its own output parameters).
"""
from __future__ import annotations

from .. import ir
from .graph_edit import same_quant

#: Ops whose kernels apply a clamp range (``act``) to their output.
FUSABLE = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "max_pool2d", "avg_pool2d", "mul", "sub",
           "affine", "transpose_conv2d")


def _fusable(g: ir.Graph, clamp: ir.Node) -> ir.Node | None:
    src = clamp.inputs[0]
    p = g.producer(src)
    if p is None or p.op not in FUSABLE or len(g.consumers(src)) != 1 or src in g.outputs:
        return None
    y, z = g.tensors[src], g.tensors[clamp.outputs[0]]
    if y.dtype != z.dtype or y.dtype == "int8" or y.dtype == "int32":
        return None
    if y.dtype == "int16" and not same_quant(y.quant, z.quant):
        return None
    return p


def fuse_activations(g: ir.Graph, ctx=None) -> ir.Graph:
    """Fold every fusable clamp into its producer (in place); return the graph."""
    changed = True
    while changed:
        changed = False
        for n in list(g.nodes):
            if n.op != "clamp":
                continue
            p = _fusable(g, n)
            if p is None:
                continue
            src = n.inputs[0]
            lo, hi = p.attrs["act"]
            nlo, nhi = n.attrs["act"]
            p.attrs["act"] = (max(lo, nlo), min(hi, nhi))
            p.outputs = [n.outputs[0]]
            g.nodes.remove(n)
            del g.tensors[src]
            changed = True
    return g
