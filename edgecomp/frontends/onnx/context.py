"""The lowering context: the IR graph being built from an ONNX graph, the ONNX constants, shapes
and names, and the helpers every op's lowering uses (layouts, weights, padding, outputs)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from ... import ir
from ...errors import ModelError, UnsupportedError
from .layout import Layout, channels_last_layout, ir_shape, set_layout
from .load import ATTR_LIMIT, MAX_ELEMENTS, POSITIVE_INTS, check_attrs  # noqa: F401

NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


@dataclass
class Ctx:
    g: ir.Graph
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # ONNX-layout float constants
    qconsts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # ONNX (NCHW) shapes
    alias: dict[str, str] = field(default_factory=dict)  # ONNX name -> IR tensor name
    layouts: dict[str, Layout] = field(default_factory=dict)  # IR tensor -> how it holds its ONNX tensor (layout.py)
    moved: dict = field(default_factory=dict)  # (IR tensor, layout) -> the copy of it in that layout
    used: set = field(default_factory=set)  # ONNX names some node or the graph output reads
    counter: int = 0
    opset: int = 17  # the model's ai.onnx opset (some ops changed their semantics over the versions)

    def name(self, onnx_name: str) -> str:
        return self.alias.get(onnx_name, onnx_name)

    def add_tensor(self, name, shape, dtype="float32", quant=None, data=None) -> str:
        self.g.tensors[name] = ir.Tensor(name, shape, dtype, quant, data)
        return name

    def add_node(self, name, op, inputs, outputs, **attrs) -> ir.Node:
        n = ir.Node(name or f"{op}_{len(self.g.nodes)}", op, list(inputs), list(outputs), attrs)
        self.g.nodes.append(n)
        return n

    def fresh(self, base: str) -> str:
        """A tensor name not taken yet (``base`` or ``base_<n>``)."""
        n = base
        while n in self.g.tensors:
            self.counter += 1
            n = f"{base}_{self.counter}"
        return n

    def const(self, name, data: np.ndarray) -> str:
        n = name
        while n in self.g.tensors:
            self.counter += 1
            n = f"{name}_{self.counter}"
        self.add_tensor(n, data.shape, "float32", None, data.astype(np.float32))
        return n


def attrs_of(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def check_shape(name: str, shape) -> tuple[int, ...]:
    dims = []
    for d in shape:
        if d is None or d < 0:
            raise ModelError(f"tensor {name!r} has an unknown or negative dimension {d}",
                             fix="Export with static shapes (batch size 1)")
        if d == 0:
            raise ModelError(f"tensor {name!r} has a zero dimension (shape {list(shape)}): it holds no data",
                             fix="Export with static, non-empty shapes (batch size 1)")
        dims.append(int(d))
    if math.prod(dims) > MAX_ELEMENTS:
        raise ModelError(f"tensor {name!r} declares {math.prod(dims):,} elements, more than edgecomp accepts",
                         fix="Check the model; microcontroller models have far smaller tensors")
    return tuple(dims)


def value_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif i == 0:
                dims.append(1)  # symbolic batch -> 1
            else:
                dims.append(None)
        if None not in dims:
            out[vi.name] = check_shape(vi.name, dims)
    return out


def malformed(where: str, e: Exception) -> ModelError:
    return ModelError(f"malformed ONNX model ({type(e).__name__}: {str(e)[:160]})", where=where,
                      fix="Check the model with onnx.checker and onnxruntime; if both accept it, please report "
                          "this as an edgecomp bug")


class Wrap:
    """Adapter so ir.topo_sort can order ONNX nodes (empty names are allowed in ONNX)."""

    def __init__(self, n):
        self.n = n
        self.name = n.name or n.op_type
        self.inputs = [i for i in n.input if i]
        self.outputs = list(n.output)


def shape_of(c: Ctx, onnx_name: str) -> tuple[int, ...]:
    if onnx_name in c.consts:
        return tuple(c.consts[onnx_name].shape)
    if onnx_name in c.shapes:
        return c.shapes[onnx_name]
    raise ModelError(f"tensor {onnx_name!r} has no known shape", fix="Export the model with static shapes")


def const_value(c: Ctx, name: str) -> np.ndarray | None:
    return c.consts.get(name)


def out_tensor(c: Ctx, node, shape_onnx, dtype="float32", quant=None, layout="auto") -> str:
    """The node's (first) output: ONNX shape ``shape_onnx``, held in ``layout`` ("auto": NHWC for a
    4-D tensor, ONNX order else); its IR shape is the layout's memory shape."""
    o = node.output[0]
    s = tuple(shape_onnx)
    c.shapes[o] = s
    if layout == "auto":
        layout = channels_last_layout(s) if len(s) == 4 else None
    set_layout(c, o, layout)
    return c.add_tensor(o, ir_shape(layout, s), dtype, quant)


def like_input(c: Ctx, node, x: str, shape_onnx, dtype="float32", quant=None) -> str:
    """An output with the same shape and layout as the IR tensor ``x`` (elementwise ops)."""
    o = node.output[0]
    c.shapes[o] = tuple(shape_onnx)
    set_layout(c, o, c.layouts.get(x))
    return c.add_tensor(o, tuple(c.g.tensors[x].shape), dtype, quant)


def weight(c: Ctx, name: str, where: str) -> np.ndarray:
    w = c.consts.get(name)
    if w is None:
        raise UnsupportedError(f"weight {name!r} is not a constant", where=where,
                               fix="Export with constant weights (do_constant_folding=True)")
    return w


def pads(a: dict, xs, ks, strides, dil, where) -> tuple[int, int, int, int]:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        ph = ir.same_padding(xs[2], ks[0], strides[0], dil[0])
        pw = ir.same_padding(xs[3], ks[1], strides[1], dil[1])
        if auto == "SAME_LOWER":
            ph, pw = ph[::-1], pw[::-1]
        return (ph[0], pw[0], ph[1], pw[1])
    if auto == "VALID":
        return (0, 0, 0, 0)
    p = list(a.get("pads", [0, 0, 0, 0]))
    if len(p) != 4 or min(p) < 0:
        raise UnsupportedError(f"padding {p}", where=where, fix="Use 2-D convolutions/pools with non-negative pads")
    return (p[0], p[1], p[2], p[3])


def ir_const(c: Ctx, onnx_name: str, perm, qaxis) -> str:
    """A float IR constant in IR layout; its int form (if any) goes to graph.meta['qconst']."""
    f = c.consts[onnx_name]
    name = c.const(onnx_name, f.transpose(perm) if perm else f)
    if onnx_name in c.qconsts:
        q, s, z, axis = c.qconsts[onnx_name]
        qd = q.transpose(perm) if perm else q
        new_axis = None if axis is None else (perm.index(axis) if perm else axis)
        if axis is not None and perm is None:
            new_axis = axis
        c.g.meta.setdefault("qconst", {})[name] = (qd, s, z, new_axis)
    return name
