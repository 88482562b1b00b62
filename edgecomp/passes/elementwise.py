"""Elementwise rewrites: affine chains fused, QDQ islands of unary functions made tables, tables
composed.

* :func:`fuse_affine` (import pass, float): ``affine(affine(x))`` -> one affine (input
  normalisation ``(x - mean) / std``: one per-channel op).
* :func:`lut_islands` (called by ``qdq.fold_qdq``): ``dequantize -> f1 -> ... -> fk -> quantize`` with
  every ``fi`` a float function of one element (``unary``, a scalar ``affine``, a float ``clamp``)
  -> one int8 ``lut`` whose table is the chain on the 256 dequantized points, each step stored as
  float32 as ONNX Runtime does, quantized as QuantizeLinear.
* :func:`fold_luts` (C pass, TFLite and ONNX graphs alike): a lut or int8 clamp after a lut or clamp
  -> one lut; an int8 binary op both of whose operands are functions of one tensor x (x itself, or
  a lut / clamp of x: SiLU's ``x * sigmoid(x)``, HardSwish's ``x * hard_sigmoid(x)``) -> one lut of
  x; a lut that only clamps, in the quantization of a conv / pool / add before it, -> that op's
  clamp range (exact: the same integers); float ``x * sigmoid(x)`` -> ``unary`` silu.  Every fold
  computes the new table with the interpreter's own op semantics on the 256 inputs, so the graph
  computes the same integers after it as before.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir
from .. import tables
from .graph_edit import remove_dead, same_quant, working_copy

#: Ops whose int8 output clamp (``act``) may absorb a lut that only clamps.
CLAMPS_OUTPUT = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "max_pool2d", "avg_pool2d")


def _single_reader(g: ir.Graph, name: str) -> ir.Node | None:
    cons = g.consumers(name)
    return cons[0] if len(cons) == 1 and name not in g.outputs else None


def _const(g: ir.Graph, name: str) -> np.ndarray:
    return np.asarray(g.tensors[name].data, np.float64)


# -- float affine chains -----------------------------------------------------------------------

def fuse_affine(g: ir.Graph, ctx=None) -> ir.Graph:
    """affine(affine(x)) -> affine(x) with scale s1 s2 and bias b1 s2 + b2 (float graphs)."""
    changed = True
    while changed:
        changed = False
        for n in list(g.nodes):
            m = _single_reader(g, n.outputs[0]) if n.op == "affine" else None
            if m is None or m.op != "affine" or m.inputs[0] != n.outputs[0] or n.attrs.get("act") not in \
                    (None, (-np.inf, np.inf)) or g.tensors[n.outputs[0]].dtype != "float32":
                continue
            s1, b1, s2, b2 = (_const(g, t) for t in (n.inputs[1], n.inputs[2], m.inputs[1], m.inputs[2]))
            s, b = np.broadcast_arrays(s1 * s2, b1 * s2 + b2)
            sn, bn = _new_const(g, f"{m.outputs[0]}_scale", s), _new_const(g, f"{m.outputs[0]}_bias", b)
            m.inputs = [n.inputs[0], sn, bn]
            g.nodes.remove(n)
            changed = True
    return remove_dead(g)


def _new_const(g: ir.Graph, base: str, data: np.ndarray) -> str:
    name, k = base, 0
    while name in g.tensors:
        k += 1
        name = f"{base}_{k}"
    g.tensors[name] = ir.Tensor(name, data.shape, "float32", None, np.ascontiguousarray(data, np.float32))
    return name


# -- QDQ islands of float functions -> tables ----------------------------------------------------

def _step(g: ir.Graph, n: ir.Node) -> list[dict] | None:
    """The float steps of a one-element function node (None if it is not one)."""
    if g.tensors[n.outputs[0]].dtype != "float32" or g.tensors[n.inputs[0]].dtype != "float32":
        return None
    act = n.attrs.get("act")
    tail = [] if act is None or tuple(act) == (-np.inf, np.inf) else [{"fn": "clamp", "lo": act[0], "hi": act[1]}]
    if n.op == "unary":
        return [{k: v for k, v in n.attrs.items() if k != "act"}] + tail
    if n.op == "clamp":
        return tail or [{"fn": "clamp", "lo": -np.inf, "hi": np.inf}]
    if n.op == "affine" and g.tensors[n.inputs[1]].size == 1 and g.tensors[n.inputs[2]].size == 1:
        return [{"fn": "affine", "scale": float(_const(g, n.inputs[1]).reshape(-1)[0]),
                 "bias": float(_const(g, n.inputs[2]).reshape(-1)[0])}] + tail
    return None


def lut_islands(g: ir.Graph) -> ir.Graph:
    """dequantize -> one-element float functions -> quantize (int8) -> one lut."""
    for d in [n for n in g.nodes if n.op == "dequantize"]:
        src = d.inputs[0]
        if g.tensors[src].dtype != "int8":
            continue
        for first in g.consumers(d.outputs[0]):
            if first not in g.nodes:
                continue
            chain, steps, n = [], [], first
            while n is not None and n.inputs[0] == (chain[-1].outputs[0] if chain else d.outputs[0]):
                s = _step(g, n)
                if s is None:
                    break
                chain.append(n)
                steps += s
                n = _single_reader(g, n.outputs[0])
            if not chain or n is None or n.op != "quantize" or g.tensors[n.outputs[0]].dtype != "int8" \
                    or all(c.op == "clamp" for c in chain):  # (a lone Relu / Clip stays an int8 clamp)
                continue
            if any(g.tensors[i].is_const is False and i != (chain[k - 1].outputs[0] if k else d.outputs[0])
                   for k, c in enumerate(chain) for i in c.inputs):
                continue
            fn = "+".join(s["fn"] for s in steps)
            lut = ir.Node(f"{n.name}_lut", "lut", [src], [n.outputs[0]], {"fn": fn, "chain": steps})
            g.nodes.insert(g.nodes.index(n), lut)
            for c in chain + [n]:
                g.nodes.remove(c)
    return remove_dead(g)


# -- tables composed ------------------------------------------------------------------------------

def _table_of(g: ir.Graph, n: ir.Node) -> np.ndarray | None:
    """The 256-entry table of an int8 lut or int8 clamp node (None for other nodes)."""
    from ..ops.common import q_of
    if g.tensors[n.outputs[0]].dtype != "int8" or g.tensors[n.inputs[0]].dtype != "int8":
        return None
    if n.op == "lut":
        return np.asarray(q_of(g, n)["table"], np.int8)
    if n.op == "clamp":
        lo, hi = n.attrs.get("act") or (-128, 127)
        return np.clip(tables.INPUTS, int(lo), int(hi)).astype(np.int8)
    return None


def _as_lut(g: ir.Graph, n: ir.Node, src: str, table: np.ndarray, fn: str) -> None:
    """Node n becomes lut(src) with this table (composed: no function to rebuild it from)."""
    n.op, n.inputs = "lut", [src]
    n.attrs = {"fn": fn, "table": np.asarray(table, np.int8)}


def _source(g: ir.Graph, name: str) -> tuple[str, np.ndarray]:
    """(x, f): the tensor is f(x) for f a table (x itself: the identity)."""
    p = g.producer(name)
    t = _table_of(g, p) if p is not None else None
    if t is not None:
        return p.inputs[0], t
    return name, tables.INPUTS.astype(np.int8)


def _binary_table(g: ir.Graph, n: ir.Node, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """The op on the 256 points, run by its interpreter function on a view of the node whose
    tensors are [1, 256] (same types and quantization): the model's shapes need not divide 256."""
    d = ir.OPS[n.op]
    view = working_copy(g)
    for name in set(n.inputs) | set(n.outputs):
        t = g.tensors[name]
        view.tensors[name] = dataclasses.replace(t, shape=(1, 256))
    env = {n.inputs[0]: fa.reshape(1, 256), n.inputs[1]: fb.reshape(1, 256)}
    return np.asarray(d.run(view, n, env), np.int8).reshape(256)


def fold_luts(g: ir.Graph, ctx=None) -> ir.Graph:
    """Compose luts, int8 clamps and int8 binary ops of one tensor into single tables (see above)."""
    changed = True
    while changed:
        changed = False
        for n in list(g.nodes):
            if n not in g.nodes:
                continue
            changed |= _fold_one(g, n)
        g = remove_dead(g)
    return g


def _fold_one(g: ir.Graph, n: ir.Node) -> bool:
    outer = _table_of(g, n)
    if outer is not None:
        p = g.producer(n.inputs[0])
        inner = _table_of(g, p) if p is not None and _single_reader(g, n.inputs[0]) is n else None
        if inner is not None and (n.op == "lut" or p.op == "lut"):
            _as_lut(g, n, p.inputs[0], outer[inner.view(np.uint8)], f"{p.attrs.get('fn', p.op)}+{n.attrs.get('fn', n.op)}")
            return True
        return n.op == "lut" and _clamp_into_producer(g, n, outer)
    if n.op in ("mul", "add", "sub", "maximum", "minimum", "squared_difference") and len(n.inputs) == 2 \
            and g.tensors[n.outputs[0]].dtype == "int8" and not any(g.tensors[i].is_const for i in n.inputs):
        (xa, fa), (xb, fb) = _source(g, n.inputs[0]), _source(g, n.inputs[1])
        if xa == xb and g.tensors[xa].shape == g.tensors[n.outputs[0]].shape:
            _as_lut(g, n, xa, _binary_table(g, n, fa, fb), f"{n.op} of one tensor")
            return True
    if n.op == "mul" and g.tensors[n.outputs[0]].dtype == "float32" and len(n.inputs) == 2:
        for a, b in ((0, 1), (1, 0)):
            p = g.producer(n.inputs[b])
            if p is not None and p.op == "unary" and p.attrs.get("fn") == "sigmoid" and p.inputs[0] == n.inputs[a] \
                    and "act" not in p.attrs and g.tensors[n.inputs[a]].shape == g.tensors[n.outputs[0]].shape:
                act = n.attrs.get("act")
                n.op, n.inputs, n.attrs = "unary", [n.inputs[a]], {"fn": "silu"}
                if act is not None and tuple(act) != (-np.inf, np.inf):
                    n.attrs["act"] = act
                return True
    return False


def _clamp_into_producer(g: ir.Graph, n: ir.Node, table: np.ndarray) -> bool:
    """A lut that only clamps (in its input's quantization) joins the clamp range of the op before."""
    x, y = g.tensors[n.inputs[0]], g.tensors[n.outputs[0]]
    p = g.producer(n.inputs[0])
    if p is None or p.op not in CLAMPS_OUTPUT or _single_reader(g, n.inputs[0]) is not n or p.attrs.get("residual") \
            or not same_quant(x.quant, y.quant):
        return False
    lo, hi = int(table[128]), int(table[127])  # table at -128 and at 127
    if not np.array_equal(table, np.clip(tables.INPUTS, lo, hi).astype(np.int8)):
        return False
    plo, phi = p.attrs.get("act") or (-128, 127)
    p.attrs["act"] = (max(int(plo), lo), min(int(phi), hi))
    p.attrs.pop("q", None)
    p.outputs = [n.outputs[0]]  # (x had no other reader)
    g.nodes.remove(n)
    return True
