"""Fusion pass: a residual ``add`` folded into the convolution that produces one operand.

``y = conv(x); z = add(y, skip)`` becomes one conv node writing ``z`` with
``attrs["residual"] = {"tensor": skip, "act": add's act, "q": add q}`` (and, for
int8, ``attrs["conv_out_quant"]`` = the quantization of ``y``), the convention
``edgecomp.interp`` and ``passes.requantize`` read.  The conv computes its own
int8 value (own act clamp and output quantization), then the int8 add with the
add's parameters, so the result is bit-exact with running the two ops.  TFLite's
add is symmetric in its operands (with their parameters), so ``y`` may be either.

Conditions: the add's operand is produced by a conv2d / depthwise_conv2d whose
only reader is the add, is not a graph output, and the skip tensor is available
when the conv runs (a graph input or produced before the conv).  The memory
planner then lets the output overwrite the skip tensor when it dies there.
"""
from __future__ import annotations

import copy

from .. import ir

FUSABLE = ("conv2d", "depthwise_conv2d")


def fuse_residual_adds(graph: ir.Graph, ctx=None) -> ir.Graph:
    """Return a copy of ``graph`` with residual adds fused into their producing convs."""
    g = copy.copy(graph)
    g.nodes = [copy.copy(n) for n in graph.nodes]
    for n in g.nodes:
        n.attrs = dict(n.attrs)
    g.tensors = dict(graph.tensors)
    index = {n.name: i for i, n in enumerate(g.nodes)}
    removed: set[str] = set()
    for add in list(g.nodes):
        if add.op != "add" or add.name in removed or len(add.inputs) != 2:
            continue
        out = g.tensors[add.outputs[0]]
        for k in (0, 1):
            y, skip = add.inputs[k], add.inputs[1 - k]
            if y == skip or y in g.outputs:
                continue
            conv = next((n for n in g.nodes if y in n.outputs and n.name not in removed), None)
            if conv is None or conv.op not in FUSABLE or conv.attrs.get("residual") or "hybrid" in conv.attrs:
                continue
            readers = [n for n in g.nodes if n.name not in removed and
                       (y in n.inputs or (n.attrs.get("residual") or {}).get("tensor") == y)]
            if readers != [add]:
                continue
            if g.tensors[skip].shape != out.shape or g.tensors[y].shape != out.shape:
                continue
            if skip not in g.inputs:
                prod = next((n for n in g.nodes if skip in n.outputs and n.name not in removed), None)
                if prod is None or index[prod.name] >= index[conv.name]:
                    continue
            yt = g.tensors[y]
            if (yt.dtype == "float32") != (out.dtype == "float32") or "int16" in (yt.dtype, out.dtype):
                continue  # (int16 adds run on their own: ec_add_s16)
            res = {"tensor": skip, "act": add.attrs.get("act"), "add": add.name}
            if out.dtype != "float32":
                if yt.quant is None:
                    continue
                conv.attrs["conv_out_quant"] = yt.quant
                if "q" in add.attrs:
                    q = dict(add.attrs["q"])
                    if k == 1:  # the conv result becomes input1: swap the operands' parameters
                        for a, b in (("input1_offset", "input2_offset"), ("input1_multiplier", "input2_multiplier"),
                                     ("input1_shift", "input2_shift")):
                            q[a], q[b] = q[b], q[a]
                    res["q"] = q
            conv.attrs["residual"] = res
            conv.outputs = [add.outputs[0]]
            removed.add(add.name)
            break
    g.nodes = [n for n in g.nodes if n.name not in removed]
    return g
