"""The graph IR every frontend produces and every backend reads.

One IR for all inputs (PyTorch, ONNX, TFLite).  It is a *lowered* graph in the
style of TensorFlow Lite: activations are NHWC, weights are in TFLite layouts,
activation functions are fused into the op that produces them (as a clamp range
``act``), and quantized tensors carry their affine parameters.  Frontends know
nothing of backends; backends read only this module's types.

Layouts
-------
* 4-D activations: NHWC.  2-D activations: [N, features].
* ``conv2d`` weights: [O, KH, KW, I];  ``depthwise_conv2d``: [1, KH, KW, C*M];
  ``fully_connected``: [O, I];  bias: [O] (int32 for int8 graphs, float32 else).

Ops and their attributes (see docs/internals.md for the full table)
-------------------------------------------------------------------
``conv2d``, ``depthwise_conv2d``: stride (sh, sw), dilation (dh, dw),
  pad (top, left, bottom, right), act (lo, hi); depthwise also depth_multiplier.
``fully_connected``: act.
``add``: act.   ``max_pool2d``/``avg_pool2d``: kernel, stride, pad, act.
``softmax``: beta.   ``reshape``: shape.   ``concat``: axis (in the IR layout).
``quantize`` (float -> int), ``dequantize`` (int -> float), ``clamp``: act.
Data movement (``edgecomp/ops/data.py``, ``ops/resize.py``): ``transpose`` perm, ``pad`` pads / mode /
value, ``slice`` begin / step, ``broadcast``, ``split`` axis (several outputs), ``gather`` axis
(constant int32 indices as the second input), ``resize`` mode and its index / weight tables.

The batch axis: every tensor's first axis is the model's batch (1 for most models).  The
interpreter runs k model invocations at once, a tensor of batch B as k * B rows; ops that mix
the batch axis (a concat or a slice along axis 0, a transpose that moves it) view the rows as
[k, B, ...] (:func:`edgecomp.ops.common.grouped`).

``act`` is the clamp range *in the output's own domain*: integers for quantized
outputs (already offset by the zero point, within the dtype's range), floats for
float outputs (``-inf``/``inf`` for none).  :func:`activation_range` computes it
exactly as TFLite does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

DTYPES = ("int8", "int16", "int32", "float32")

#: How the memory planner may place an op's output (passes/memory_plan.py):
#: "rows": a 4-D NHWC op computed output row by output row (the output may start over its input
#: as long as the input rows still needed are intact); "matrix_rows": the same for the rows of a
#: matrix (fully connected); "elementwise": element i written after element i is read (the output
#: may overlap an input of its size); "alias": the output is the input's bytes; "other": apart.
LAYOUTS = ("rows", "matrix_rows", "elementwise", "alias", "other")


@dataclass(frozen=True)
class OpDef:
    """An IR op: its name, the memory planner's view of it, its MACs and its semantics (the
    interpreter's function ``run(graph, node, env) -> array``, or a tuple of arrays, one per
    output, for an op with ``many_outputs``).  ``moves``: the op only moves values (any element
    type, the output in the input's quantization)."""
    name: str
    run: Callable[..., Any]
    layout: str = "other"
    macs: Callable[["Graph", "Node"], int] | None = None
    doc: str = ""
    many_outputs: bool = False
    moves: bool = False


#: Every op, by name; filled by the modules of :mod:`edgecomp.ops` (imported with the package).
OPS: dict[str, OpDef] = {}


def define_op(name: str, *, layout: str = "other", macs: Callable | None = None, many_outputs: bool = False,
              moves: bool = False):
    """Register the decorated function as the semantics of op ``name`` (see :class:`OpDef`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"op {name!r}: unknown layout {layout!r}")

    def deco(fn):
        if name in OPS and OPS[name].run is not fn:
            raise ValueError(f"op {name!r} is defined twice")
        OPS[name] = OpDef(name, fn, layout, macs, (fn.__doc__ or "").strip().split("\n")[0], many_outputs, moves)
        return fn
    return deco

_NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "float32": np.float32}


def np_dtype(dtype: str) -> type:
    return _NP[dtype]


def dtype_bytes(dtype: str) -> int:
    return np.dtype(_NP[dtype]).itemsize


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    Per tensor: ``scale`` and ``zero_point`` have one element and ``axis`` is None.
    Per channel: one element per slice along ``axis``.
    """

    scale: np.ndarray  # float32
    zero_point: np.ndarray  # int32
    axis: int | None = None

    def __post_init__(self):
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int32))
        if self.zero_point.size == 1 and self.scale.size > 1:
            self.zero_point = np.full(self.scale.shape, int(self.zero_point[0]), dtype=np.int32)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and self.scale.size > 1

    def to_json(self) -> dict:
        d: dict[str, Any] = {
            "scale": [float(s) for s in self.scale],
            "zero_point": [int(z) for z in self.zero_point],
        }
        if self.axis is not None:
            d["axis"] = int(self.axis)
        return d


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams | None = None
    data: np.ndarray | None = None  # set for constants (weights, biases)

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor {self.name!r}: unknown dtype {self.dtype!r}")

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * dtype_bytes(self.dtype)


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"node {self.name!r}: unknown op {self.op!r}")


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor]
    nodes: list[Node]  # topological order
    inputs: list[str]
    outputs: list[str]
    meta: dict[str, Any] = field(default_factory=dict)  # source format, input layout, ...

    # -- queries ---------------------------------------------------------------
    def t(self, name: str) -> Tensor:
        return self.tensors[name]

    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def activations(self) -> list[Tensor]:
        """Non-constant tensors, in order of first appearance."""
        seen: dict[str, Tensor] = {}
        for name in list(self.inputs) + [o for n in self.nodes for o in n.inputs + n.outputs]:
            t = self.tensors.get(name)
            if t is not None and not t.is_const and name not in seen:
                seen[name] = t
        return list(seen.values())

    def constants(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.is_const]

    @property
    def quantized(self) -> bool:
        return any(self.tensors[i].dtype != "float32" for i in self.inputs + self.outputs) or any(
            t.quant is not None for t in self.activations()
        )

    # -- checks ----------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError if the graph is not well formed (dangling names, order)."""
        known = set(self.inputs) | {t.name for t in self.constants()}
        for name in self.inputs + self.outputs:
            if name not in self.tensors:
                raise ValueError(f"graph names tensor {name!r} but does not define it")
        for n in self.nodes:
            for i in n.inputs:
                if i not in self.tensors:
                    raise ValueError(f"node {n.name!r} reads undefined tensor {i!r}")
                if i not in known:
                    raise ValueError(f"node {n.name!r} reads {i!r} before it is produced")
            for o in n.outputs:
                if o not in self.tensors:
                    raise ValueError(f"node {n.name!r} writes undefined tensor {o!r}")
                known.add(o)
        for o in self.outputs:
            if o not in known:
                raise ValueError(f"graph output {o!r} is never produced")

    def summary(self) -> str:
        lines = [f"graph {self.name}: inputs {self.inputs} outputs {self.outputs}"]
        for n in self.nodes:
            shp = [self.tensors[o].shape for o in n.outputs]
            lines.append(f"  {n.name:24s} {n.op:18s} {n.inputs} -> {n.outputs} {shp}")
        return "\n".join(lines)


def activation_range(kind: str | None, quant: QuantParams | None, dtype: str,
                     lo: float | None = None, hi: float | None = None) -> tuple:
    """Clamp range of a fused activation, computed as TFLite does.

    ``kind`` is None/'none', 'relu', 'relu6', 'relu_n1_to_1' or 'clip' (with lo/hi).
    For quantized outputs the result is integers: the dtype range intersected with
    ``zp + round(bound / scale)`` (TFLite's CalculateActivationRangeQuantized, which
    rounds half away from zero).  For float outputs, floats.
    """
    bounds = {None: (None, None), "none": (None, None), "relu": (0.0, None), "relu6": (0.0, 6.0),
              "relu_n1_to_1": (-1.0, 1.0), "clip": (lo, hi)}
    if kind not in bounds:
        raise ValueError(f"unknown activation {kind!r}")
    flo, fhi = bounds[kind]
    if dtype == "float32":
        return (-math.inf if flo is None else float(flo), math.inf if fhi is None else float(fhi))
    info = np.iinfo(_NP[dtype])
    qmin, qmax = int(info.min), int(info.max)
    assert quant is not None, "quantized activation range needs the output's quantization"
    scale, zp = float(quant.scale[0]), int(quant.zero_point[0])

    def q(v: float) -> int:  # float32 division, as TFLite does it
        x = float(np.float32(v) / np.float32(scale))
        return zp + int(math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5))

    lo_q = qmin if flo is None else max(qmin, q(flo))
    hi_q = qmax if fhi is None else min(qmax, q(fhi))
    return (lo_q, hi_q)


def conv_output_size(in_size: int, k: int, stride: int, dilation: int, pad_a: int, pad_b: int) -> int:
    eff = (k - 1) * dilation + 1
    return (in_size + pad_a + pad_b - eff) // stride + 1


def same_padding(in_size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: (before, after); the extra pixel goes after."""
    out = -(-in_size // stride)
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one node (0 for data movement)."""
    d = OPS[node.op]
    return int(d.macs(graph, node)) if d.macs is not None else 0


def total_macs(graph: Graph) -> int:
    return sum(macs(graph, n) for n in graph.nodes)


def param_count(graph: Graph) -> int:
    return sum(t.size for t in graph.constants())


def topo_sort(nodes: Iterable[Node], graph_inputs: Iterable[str], const_names: Iterable[str]) -> list[Node]:
    """Order nodes so every input is produced before use; ValueError on a cycle."""
    nodes = list(nodes)
    avail = set(graph_inputs) | set(const_names)
    out: list[Node] = []
    pending = nodes
    while pending:
        ready = [n for n in pending if all(i in avail for i in n.inputs)]
        if not ready:
            names = ", ".join(n.name for n in pending[:5])
            raise ValueError(f"graph has a cycle or reads undefined tensors (stuck at: {names})")
        for n in ready:
            out.append(n)
            avail.update(n.outputs)
        pending = [n for n in pending if n not in ready]
    return out
