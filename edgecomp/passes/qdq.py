"""QDQ folding: ONNX Runtime's ``dequantize -> float op -> quantize`` islands become integer ops.

Three passes (run by :mod:`edgecomp.pipeline` after the ONNX frontend, in this order):

* :func:`fold_qdq` rewrites every island into one int8 (or int16, "16x8") op with int8 weights
  and int32 bias; an island of one-element float functions (Sigmoid, HardSwish, a scalar affine,
  ...) becomes one int8 ``lut`` (:func:`edgecomp.passes.elementwise.lut_islands`); maximum /
  minimum requantize their inputs to the output's parameters first, as concat does; affine and
  prelu keep their float constants (requantize.py forms their integers).  Ops that move values without rescaling (concat, max pool, reshape, clamp) get
  an int -> int ``quantize`` (TFLite's requantize) where ORT chose different scales: before
  concat, after the others.  An int8 global average pool whose output scale differs from its
  input's becomes the int8 ``mean`` (summed, requantized once); another average pool with two
  scales stays in float (averaging at the coarse scale and rescaling loses precision).  An
  ``argmax`` of a dequantized tensor reads its integers (the order is the same).
* :func:`cancel_qdq` drops ``quantize(dequantize(x))`` pairs with equal parameters and turns the
  others into int -> int requantizations.
* :func:`int_boundaries` makes the graph's inputs and outputs int8 where they are only quantized
  or dequantized (int16 models keep float inputs and outputs).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import UnsupportedError
from ..ops.pool import tflite_window
from .elementwise import lut_islands
from .graph_edit import remove_dead, rename, replace_uses, same_quant

INT_OPS = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "max_pool2d", "avg_pool2d",
           "softmax", "reshape", "concat", "clamp", "transpose", "mul", "sub", "maximum", "minimum", "affine", "prelu",
           "mean", "transpose_conv2d", "resize", "batch_matmul")
#: Ops whose constant inputs stay float in their int8 form (requantize.py makes their integers).
FLOAT_CONST_OPS = ("affine", "prelu")
#: Ops whose result depends only on the order of their input values (int32 outputs, no
#: quantize after them): they read a dequantize's integers directly (scale > 0 keeps the order).
ORDER_OPS = ("argmax",)


#: Ops folded into int16 (16x8) integer ops; other int16 islands stay float (dequantize/quantize kept).
INT16_OPS = ("conv2d", "depthwise_conv2d", "fully_connected", "max_pool2d", "add", "avg_pool2d", "reshape", "clamp",
             "transpose",
             "concat")


def _int_act(act, quant: ir.QuantParams, dtype: str = "int8") -> tuple[int, int]:
    lo, hi = act
    if lo == -math.inf and hi == math.inf:
        info = np.iinfo(ir.np_dtype(dtype))
        return (int(info.min), int(info.max))
    return ir.activation_range("clip", quant, dtype, None if lo == -math.inf else lo,
                               None if hi == math.inf else hi)


def _int16_island(g: ir.Graph, n: ir.Node, srcs: list[str], yq: str, qconst: dict) -> bool | None:
    """None if the island is not int16; else whether the int16 kernels can run it (16x8)."""
    dts = {g.tensors[yq].dtype} | {g.tensors[s].dtype for s in srcs if not g.tensors[s].is_const}
    if "int16" not in dts:
        return None
    if dts != {"int16"} or n.op not in INT16_OPS:
        return False
    if n.op in ("max_pool2d", "avg_pool2d") and not tflite_window(n.attrs) or int(n.attrs.get("groups", 1)) != 1:
        return False  # dilated, counting the padding, grouped: the int16 kernels do not

    if len(n.inputs) > 1 and g.tensors[n.inputs[1]].is_const:  # weights int8 (16x8), bias int32
        w = qconst.get(n.inputs[1])
        if w is None or w[0].dtype != np.int8:
            return False
        if len(n.inputs) > 2 and n.inputs[2] in qconst and qconst[n.inputs[2]][0].dtype != np.int32:
            return False
    return True


def fold_qdq(g: ir.Graph, ctx=None) -> ir.Graph:
    """Rewrite dequantize -> float op -> quantize islands into integer ops (in place); islands of
    one-element float functions become tables first (``elementwise.lut_islands``)."""
    lut_islands(g)
    if any(n.op == "batch_matmul" for n in g.nodes):
        sink_dequantize(g)  # the heads' transposes / reshapes to the integer side: the matmul then sees dequantizes
    qconst = g.meta.get("qconst", {})
    for n in list(g.nodes):
        if n.op not in INT_OPS:
            continue
        if n.op in ("maximum", "minimum") and any(g.tensors[i].is_const for i in n.inputs):
            continue  # a constant operand: the float op stays between dequantize / quantize
        if n.op == "batch_matmul" and any(g.tensors[i].is_const for i in n.inputs):
            continue  # int8 batch_matmul takes two activations (a constant one stays float)
        cons = g.consumers(n.outputs[0])
        if len(cons) != 1 or cons[0].op != "quantize" or n.outputs[0] in g.outputs:
            continue
        qnode = cons[0]
        if n.op in ("conv2d", "depthwise_conv2d", "fully_connected", "transpose_conv2d") and len(n.inputs) > 1 \
                and g.tensors[n.inputs[1]].is_const and n.inputs[1] not in qconst:
            continue  # a layer left in float (mixed precision): its dequantize/quantize nodes stay
        srcs = []
        ok = True
        for i in n.inputs:
            t = g.tensors[i]
            if t.is_const:
                srcs.append(i)
                continue
            p = g.producer(i)
            if p is None or p.op != "dequantize":
                ok = False
                break
            srcs.append(p.inputs[0])
        if not ok:
            continue
        yq = qnode.outputs[0]
        yquant = g.tensors[yq].quant
        ydtype = g.tensors[yq].dtype
        if _int16_island(g, n, srcs, yq, qconst) is False:
            continue  # int16 where the int16 kernels do not go: the float op stays between dequantize/quantize
        if n.op == "softmax" and not (abs(float(yquant.scale[0]) - 1 / 256) < 1e-9 and int(yquant.zero_point[0]) == -128):
            continue  # TFLM's int8 softmax needs scale 1/256, zp -128: keep it in float
        requant_after = None
        if n.op in ("mul", "sub", "maximum", "minimum", "affine", "prelu", "batch_matmul") and ydtype != "int8":
            continue
        if n.op in ("concat", "maximum", "minimum"):
            # concat moves int8 values without rescaling (TFLite's rule): requantize any input
            # whose parameters differ from the output's first (an int8 -> int8 quantize node)
            srcs = [s if same_quant(g.tensors[s].quant, yquant) else _requantize_before(g, n, s, yquant)
                    for s in srcs]
        elif n.op == "avg_pool2d" and not same_quant(g.tensors[srcs[0]].quant, yquant) and ydtype != "int16":
            if not _global_pool(g, n) or ydtype != "int8":
                continue  # an average rounded at the input's scale then rescaled loses precision: stays float
                # (the int16 kernel keeps 16 fraction bits of the mean and rescales once)
            # a global average: the int8 mean, summed and requantized once to the output scale
            n.op = "mean"
            n.attrs = {"axes": (1, 2), "keep_dims": True, "act": n.attrs.get("act", (-math.inf, math.inf))}
        elif n.op in ("max_pool2d", "reshape", "clamp", "transpose", "resize") \
                and not same_quant(g.tensors[srcs[0]].quant, yquant):
            # single-input ops work in their input's quantization, then one requantize to the
            # output's (before pooling it would clip values that the average still needs)
            requant_after = yquant
        new_inputs = []
        for k, (orig, s) in enumerate(zip(n.inputs, srcs)):
            t = g.tensors[orig]
            if not t.is_const or n.op in FLOAT_CONST_OPS:
                new_inputs.append(s)
                continue
            new_inputs.append(_int_const(g, n, k, orig, qconst, srcs))
        n.inputs = new_inputs
        old_out = n.outputs[0]
        if requant_after is not None:
            xquant = g.tensors[srcs[0]].quant
            mid = f"{yq}_before_requant"
            g.tensors[mid] = ir.Tensor(mid, g.tensors[yq].shape, ydtype,
                                       ir.QuantParams(xquant.scale.copy(), xquant.zero_point.copy()))
            n.outputs = [mid]
            if "act" in n.attrs:
                n.attrs["act"] = _int_act(n.attrs["act"], xquant, ydtype)
            qnode.inputs = [mid]  # the quantize node stays: int8 -> int8 requantize
        else:
            n.outputs = [yq]
            if "act" in n.attrs:
                n.attrs["act"] = _int_act(n.attrs["act"], yquant, ydtype)
            g.nodes.remove(qnode)
        del g.tensors[old_out]
    for n in g.nodes:
        p = g.producer(n.inputs[0]) if n.op in ORDER_OPS else None
        if p is not None and p.op == "dequantize" and g.tensors[p.inputs[0]].quant is not None \
                and float(g.tensors[p.inputs[0]].quant.scale[0]) > 0:
            n.inputs[0] = p.inputs[0]
    g.meta.pop("qconst", None)  # the integer forms of constants are in the graph now
    sink_dequantize(g)
    return remove_dead(g)


def _global_pool(g: ir.Graph, n: ir.Node) -> bool:
    """An average pool over the whole of each channel (GlobalAveragePool): one output pixel."""
    x, y = g.tensors[n.inputs[0]], g.tensors[n.outputs[0]]
    return len(x.shape) == 4 and tuple(n.attrs["kernel"]) == tuple(x.shape[1:3]) and not any(n.attrs["pad"]) \
        and tuple(y.shape[1:3]) == (1, 1)
def _dequantized(g: ir.Graph, n: ir.Node) -> list[ir.Node] | None:
    """The dequantize nodes feeding an op that moves values without changing them (its one
    activation input, the first; or every input of a concat, all in one quantization), or None."""
    if not ir.OPS[n.op].moves or (n.op == "resize" and n.attrs.get("mode") != "nearest"):
        return None
    acts = [i for i in n.inputs if not g.tensors[i].is_const]
    if n.op != "concat" and acts != n.inputs[:1]:
        return None
    ps = [g.producer(i) for i in acts]
    if not ps or any(p is None or p.op != "dequantize" for p in ps):
        return None
    srcs = [g.tensors[p.inputs[0]] for p in ps]
    if any(t.dtype != srcs[0].dtype or not same_quant(t.quant, srcs[0].quant) for t in srcs):
        return None
    return ps


def sink_dequantize(g: ir.Graph) -> ir.Graph:
    """``move(dequantize(x))`` becomes ``dequantize(move(x))`` for ops that only move values (pad,
    slice, split, gather, broadcast, nearest resize, reshape, transpose; concat of inputs in one
    quantization): exact, and it brings the
    move to the integer side (ONNX Runtime leaves some of them in float, e.g. DepthToSpace; the
    QDQ pairs it leaves behind are then cancelled or become requantizations).  A pad's constant is
    quantized (rounded half to even, as QuantizeLinear) into the input's parameters."""
    changed = True
    while changed:
        changed = False
        for n in list(g.nodes):
            ps = _dequantized(g, n)
            if ps is None:
                continue
            src = g.tensors[ps[0].inputs[0]]
            if n.op == "pad" and n.attrs.get("mode", "constant") == "constant":
                info = np.iinfo(ir.np_dtype(src.dtype))
                s, z = float(src.quant.scale[0]), int(src.quant.zero_point[0])
                v = int(np.clip(np.rint(np.float32(n.attrs.get("value", 0.0)) / np.float32(s)) + z, info.min, info.max))
                n.attrs["value"] = v
            ints = []
            for o in n.outputs:
                t = g.tensors[o]
                name = f"{o}_int"
                while name in g.tensors:
                    name += "_"
                g.tensors[name] = ir.Tensor(name, t.shape, src.dtype,
                                            ir.QuantParams(src.quant.scale.copy(), src.quant.zero_point.copy()))
                ints.append(name)
            at = g.nodes.index(n)
            for j, (q, o) in enumerate(zip(ints, n.outputs)):
                g.nodes.insert(at + 1 + j, ir.Node(f"{o}_dequantize", "dequantize", [q], [o]))
            n.inputs = [p.inputs[0] for p in ps] if n.op == "concat" else [ps[0].inputs[0]] + n.inputs[1:]
            n.outputs = ints
            changed = True
    return g


def _requantize_before(g: ir.Graph, n: ir.Node, src: str, quant: ir.QuantParams) -> str:
    """Insert ``quantize`` (int8 -> int8, TFLite's requantize) of ``src`` to ``quant`` before node ``n``."""
    name = f"{src}_requant_{n.name}"
    t = g.tensors[src]
    g.tensors[name] = ir.Tensor(name, t.shape, t.dtype, ir.QuantParams(quant.scale.copy(), quant.zero_point.copy()))
    g.nodes.insert(g.nodes.index(n), ir.Node(f"{n.name}_requant_{len(g.nodes)}", "quantize", [src], [name]))
    return name


def _int_const(g: ir.Graph, n: ir.Node, k: int, name: str, qconst: dict, srcs: list[str]) -> str:
    """The integer form of constant input k of node n (weights int8, bias int32)."""
    t = g.tensors[name]
    if k == 1:  # weights
        if name not in qconst:
            raise UnsupportedError("float weights inside a quantized layer", where=f"node {n.name!r}",
                                   fix="Quantize weights too (edgecomp compile --precision int8 does)")
        q, s, z, axis = qconst[name]
        if np.any(z != 0):
            raise UnsupportedError("asymmetric int8 weights", where=f"node {n.name!r}",
                                   fix="Quantize weights symmetrically (WeightSymmetric=True)")
        qname = name.replace("_DequantizeLinear_Output", "") + "_q"
        g.tensors[qname] = ir.Tensor(qname, q.shape, "int8", ir.QuantParams(s, z, axis), q.astype(np.int8))
        return qname
    # bias: int32 with scale s_in * s_w
    x_quant = g.tensors[srcs[0]].quant
    w_quant = g.tensors[n.inputs[1]].quant if n.inputs[1] in g.tensors else None
    if n.inputs[1] in qconst:  # (n.inputs still names the float weights: their integer form's scales)
        w_quant = ir.QuantParams(qconst[n.inputs[1]][1], qconst[n.inputs[1]][2], qconst[n.inputs[1]][3])
    if name in qconst:
        q, s, z, axis = qconst[name]
        data = q.astype(np.int32)
        quant = ir.QuantParams(s, z, axis)
    else:
        ws = w_quant.scale.astype(np.float64) if w_quant is not None else np.ones(1)
        s = (float(x_quant.scale[0]) * ws).astype(np.float32)
        data = np.round(t.data.astype(np.float64) / s.astype(np.float64)).astype(np.int64)
        data = np.clip(data, -2**31, 2**31 - 1).astype(np.int32)
        quant = ir.QuantParams(s, np.zeros_like(s, dtype=np.int32), 0 if s.size > 1 else None)
    qname = name + "_q"
    g.tensors[qname] = ir.Tensor(qname, data.shape, "int32", quant, data)
    return qname


def cancel_qdq(g: ir.Graph, ctx=None) -> ir.Graph:
    """quantize(dequantize(x)): drop it when the parameters agree, else requantize int8 -> int8."""
    for q in list(g.nodes):
        if q.op != "quantize":
            continue
        p = g.producer(q.inputs[0])
        if p is None or p.op != "dequantize":
            continue
        x = p.inputs[0]
        if g.tensors[x].dtype != g.tensors[q.outputs[0]].dtype:
            continue  # int8 <-> int16: through float (dequantize, quantize)
        if same_quant(g.tensors[x].quant, g.tensors[q.outputs[0]].quant) and q.outputs[0] not in g.outputs:
            replace_uses(g, q.outputs[0], x)
            g.nodes.remove(q)
            del g.tensors[q.outputs[0]]
        else:
            q.inputs = [x]
    return remove_dead(g)


def int_boundaries(g: ir.Graph, ctx=None) -> ir.Graph:
    """Make graph inputs/outputs int8 where they are only quantized/dequantized.

    int16 models keep float inputs and outputs: their first layer is a float -> int16
    quantize and their last an int16 -> float dequantize (the C API stays int8/float32)."""
    new_inputs = []
    for i in g.inputs:
        cons = g.consumers(i)
        if len(cons) == 1 and cons[0].op == "quantize" and i not in g.outputs \
                and g.tensors[cons[0].outputs[0]].dtype == "int8":
            q = cons[0]
            g.nodes.remove(q)
            del g.tensors[i]
            rename(g, q.outputs[0], i)
            new_inputs.append(i)
        else:
            new_inputs.append(i)
    g.inputs = new_inputs
    new_outputs = []
    for o in g.outputs:
        p = g.producer(o)
        if p is not None and p.op == "dequantize" and len(g.consumers(o)) == 0 \
                and g.tensors[p.inputs[0]].dtype == "int8":
            g.nodes.remove(p)
            del g.tensors[o]
            rename(g, p.inputs[0], o)
            new_outputs.append(o)
        else:
            new_outputs.append(o)
    g.outputs = new_outputs
    return g
