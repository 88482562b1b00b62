"""ONNX frontend: float or QDQ-quantized ONNX graphs into the IR.

Two steps:

1. :func:`lower` translates ONNX node by node into float IR ops in NHWC layout
   (weights transposed to TFLite layouts, batch-norm folded, Relu/Clip fused into
   their producer).  ``QuantizeLinear``/``DequantizeLinear`` become IR
   ``quantize``/``dequantize`` nodes; a ``DequantizeLinear`` of a constant becomes
   a float constant that remembers its integer form.
2. :func:`fold_qdq` rewrites every ``dequantize -> op -> quantize`` island into
   one integer op, cancels back-to-back quantize/dequantize pairs and makes the
   graph's inputs and outputs int8 (their quantization is in the manifest).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .. import ir
from ..errors import ModelError, UnsupportedError

MAX_ELEMENTS = 1 << 28  # refuse absurd declared shapes before allocating anything

SUPPORTED = {
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Add",
    "Flatten", "Reshape", "Softmax", "Concat", "BatchNormalization", "QuantizeLinear",
    "DequantizeLinear", "Identity", "Dropout", "Constant", "Squeeze", "Unsqueeze",
}

NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


# --------------------------------------------------------------------------- loading
def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file; every problem becomes a ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", fix="Check the path")
    size = path.stat().st_size
    if size == 0:
        raise ModelError("model file is empty", where=str(path), fix="Export the model again")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"not a readable ONNX file ({type(e).__name__}: {str(e)[:120]})", where=str(path),
                         fix="Check that the file is an ONNX model and was not truncated") from None
    if not model.graph.node:
        raise ModelError("ONNX file has no graph nodes (not an ONNX model, or empty)", where=str(path),
                         fix="Check that the file is an ONNX model")
    _check_names(model, path)
    _load_external_data(model, path.parent)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"invalid ONNX model: {str(e).splitlines()[0][:200]}", where=str(path),
                         fix="Re-export the model; onnx.checker.check_model must pass") from None
    return model


def _all_nodes(graph: onnx.GraphProto, depth: int = 0):
    """Every node of ``graph`` and of the subgraphs its nodes carry (If/Loop/Scan bodies)."""
    if depth > 64:
        raise ModelError("the model nests subgraphs more than 64 deep", fix="Check the model")
    for n in graph.node:
        yield n
        for a in n.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _all_nodes(g, depth + 1)


def check_for_runtime(model: onnx.ModelProto, where: str | None = None) -> None:
    """The checks that hold whatever executes the model (ONNX Runtime on a Pi, or calibration).

    ONNX Runtime runs ops edgecomp's C backend does not, so this is not :func:`lower`'s full
    check, but it refuses what makes a runtime allocate or loop absurdly before anything runs:
    spatial attributes outside [0/1, 65536] on every node (subgraphs included), unknown element
    types, and tensors whose inferred shape has more than 2^28 elements.  What remains (a Loop
    with a huge trip count) is bounded by calibrate.py's time and memory limits.
    """
    for n in _all_nodes(model.graph):
        _check_attrs(n)
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i not in onnx.TensorProto.DataType.values():
                raise ModelError(f"Cast to unknown element type {a.i}", where=f"node {n.name or n.op_type!r} (Cast)",
                                 fix="Re-export the model")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                         where=where, fix="Export the model with static shapes") from None
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.elem_type not in onnx.TensorProto.DataType.values():
            raise ModelError(f"tensor {vi.name!r} has unknown element type {tt.elem_type}", where=where,
                             fix="Re-export the model")
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value for d in tt.shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in dims) or math.prod(dims) > MAX_ELEMENTS:
            raise ModelError(f"tensor {vi.name!r} has shape {dims}: more than edgecomp accepts "
                             f"({MAX_ELEMENTS:,} elements)", where=where,
                             fix="Check the model's pads, strides and shapes; models for small devices have far "
                                 "smaller tensors")


def _check_names(model: onnx.ModelProto, path: Path) -> None:
    """Every name must be text: protobuf hands back ``bytes`` for a string field that is not UTF-8."""
    g = model.graph
    names = [g.name]
    for n in g.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)]
    for t in _all_initializers(model):
        names += [t.name, *(v for e in t.external_data for v in (e.key, e.value))]
    names += [v.name for v in list(g.input) + list(g.output) + list(g.value_info)]
    bad = next((x for x in names if not isinstance(x, str)), None)
    if bad is not None:
        raise ModelError(f"the model holds a name that is not valid UTF-8 text ({bad[:40]!r})", where=str(path),
                         fix="The file is damaged; export the model again")


def _load_external_data(model: onnx.ModelProto, base: Path) -> None:
    """Load external tensor data, refusing paths that leave the model's folder."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    base = base.resolve()
    for t in _all_initializers(model):
        if not uses_external_data(t):
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        try:
            target = (base / loc).resolve()
            inside = not os.path.isabs(loc) and base in target.parents and target.is_file()
        except (OSError, ValueError):  # NUL bytes, names too long, symlink loops
            target, inside = None, False
        if target is None or os.path.isabs(loc) or base not in target.parents:
            raise ModelError(f"tensor {t.name!r} points to external data outside the model's folder ({loc!r})",
                             fix="Keep external data files beside the model")
        if not inside:
            raise ModelError(f"external data file {loc!r} for tensor {t.name!r} is missing",
                             fix="Copy the .data file beside the model")
        _check_external_range(t, target)
        try:
            load_external_data_for_tensor(t, str(base))
        except Exception as e:
            raise ModelError(f"cannot read external data for {t.name!r}: {e}") from None


def _check_external_range(t: onnx.TensorProto, target: Path) -> None:
    """Refuse an offset/length outside the data file before anything is read (no huge buffers)."""
    info = {e.key: e.value for e in t.external_data}
    size = target.stat().st_size
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else size - offset
    except ValueError:
        raise ModelError(f"tensor {t.name!r} has a malformed external data offset/length",
                         fix="Re-export the model") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelError(f"external data of tensor {t.name!r} (offset {offset}, length {length}) lies outside "
                         f"its {size}-byte file", fix="Re-export the model; the .data file does not match it")


def _dtype_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return f"<unknown {elem}>"


def _to_array(t: onnx.TensorProto, where: str | None = None) -> np.ndarray:
    """A constant tensor as numpy, refusing absurd sizes and damaged data with a ModelError."""
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise ModelError(f"constant {t.name!r} has a negative dimension {dims}", where=where,
                         fix="Re-export the model")
    if math.prod(dims) > MAX_ELEMENTS:
        raise ModelError(f"constant {t.name!r} declares {math.prod(dims):,} elements, more than edgecomp accepts",
                         where=where, fix="Check the model; microcontroller models have far smaller tensors")
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        raise UnsupportedError(f"constant {t.name!r} of element type "
                               f"{onnx.TensorProto.DataType.Name(t.data_type)}", where=where,
                               fix="Use numeric constants")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # numpy/onnx raise several types for inconsistent data
        raise ModelError(f"constant {t.name!r} cannot be read ({type(e).__name__}: {str(e)[:120]})", where=where,
                         fix="Re-export the model; its stored data does not match its shape or type") from None


def _all_initializers(model: onnx.ModelProto):
    yield from model.graph.initializer
    for n in model.graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t


# --------------------------------------------------------------------------- lowering
@dataclass
class _Ctx:
    g: ir.Graph
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # ONNX-layout float constants
    qconsts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # ONNX (NCHW) shapes
    alias: dict[str, str] = field(default_factory=dict)  # ONNX name -> IR tensor name
    flat_chw: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # flattened NHWC that ONNX sees as CHW
    counter: int = 0

    def name(self, onnx_name: str) -> str:
        return self.alias.get(onnx_name, onnx_name)

    def add_tensor(self, name, shape, dtype="float32", quant=None, data=None) -> str:
        self.g.tensors[name] = ir.Tensor(name, shape, dtype, quant, data)
        return name

    def add_node(self, name, op, inputs, outputs, **attrs) -> ir.Node:
        n = ir.Node(name or f"{op}_{len(self.g.nodes)}", op, list(inputs), list(outputs), attrs)
        self.g.nodes.append(n)
        return n

    def const(self, name, data: np.ndarray) -> str:
        n = name
        while n in self.g.tensors:
            self.counter += 1
            n = f"{name}_{self.counter}"
        self.add_tensor(n, data.shape, "float32", None, data.astype(np.float32))
        return n


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def _check_shape(name: str, shape) -> tuple[int, ...]:
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


def _value_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
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
            out[vi.name] = _check_shape(vi.name, dims)
    return out


def lower(model: onnx.ModelProto, name: str | None = None) -> ir.Graph:
    """Translate an ONNX graph (float or QDQ) into a float-op IR graph in NHWC."""
    bad = [n for n in model.graph.node if n.op_type not in SUPPORTED or n.domain not in ("", "ai.onnx")]
    if bad:
        ops = sorted({n.op_type for n in bad})
        nodes = ", ".join(f"{n.name or '(unnamed)'} ({n.op_type})" for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise UnsupportedError(f"unsupported ONNX ops: {', '.join(ops)}", where=f"nodes {nodes}",
                               fix=f"Supported ops are {', '.join(sorted(SUPPORTED))}; replace the others "
                                   "in the model before export")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed: {str(e)[:200]}",
                         fix="Export the model with static shapes") from None
    g = ir.Graph(name or model.graph.name or "model", {}, [], [], [], {"source": "onnx", "input_layout": "NHWC",
                                                                      "source_layout": "NCHW"})
    c = _Ctx(g)
    for t in model.graph.initializer:
        c.consts[t.name] = _to_array(t)
    c.shapes = _value_shapes(model)
    inits = set(c.consts)
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if vi.name not in c.shapes:
            raise ModelError(f"input {vi.name!r} has no static shape", fix="Export with a fixed input shape")
        elem = vi.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            raise UnsupportedError(f"input {vi.name!r} has element type {_dtype_name(elem)}",
                                   fix="Use a float32 model input")
        c.add_tensor(vi.name, _nhwc(c.shapes[vi.name]))
        g.inputs.append(vi.name)
    try:
        nodes = ir.topo_sort([_Wrap(n) for n in model.graph.node], g.inputs, inits)
    except ValueError as e:
        raise ModelError(str(e), fix="Check the model graph") from None
    for w in nodes:
        try:
            _check_attrs(w.n)
            _lower_node(c, w.n)
        except (ModelError, UnsupportedError):
            raise
        except Exception as e:  # a malformed node the checks above did not name: still one clear error
            raise _malformed(f"node {w.n.name or w.n.op_type!r} ({w.n.op_type})", e) from None
    for o in model.graph.output:
        nm = c.name(o.name)
        if nm not in g.tensors:
            raise ModelError(f"graph output {o.name!r} is not produced by any supported node")
        g.outputs.append(nm)
    g.meta["onnx_inputs"] = [i for i in g.inputs]
    g.meta["onnx_outputs"] = [o.name for o in model.graph.output]
    try:
        _fuse_activations(g)
        g.validate()
    except Exception as e:
        raise _malformed("graph", e) from None
    return g


def _malformed(where: str, e: Exception) -> ModelError:
    return ModelError(f"malformed ONNX model ({type(e).__name__}: {str(e)[:160]})", where=where,
                      fix="Check the model with onnx.checker and onnxruntime; if both accept it, please report "
                          "this as an edgecomp bug")


#: Attributes that must be small positive (or, for pads, non-negative) integers.
_POSITIVE_INTS = ("strides", "dilations", "kernel_shape", "group")
_LIMIT = 1 << 16


def _check_attrs(n) -> None:
    """Refuse absurd spatial attributes with a clear message before any arithmetic uses them."""
    for a in n.attribute:
        if a.name not in _POSITIVE_INTS + ("pads",):
            continue
        vals = list(a.ints) if a.type == onnx.AttributeProto.INTS else [a.i]
        lo = 0 if a.name == "pads" else 1
        if a.type not in (onnx.AttributeProto.INTS, onnx.AttributeProto.INT) or \
                any(v < lo or v > _LIMIT for v in vals):
            raise ModelError(f"attribute {a.name}={vals} is out of range [{lo}, {_LIMIT}]",
                             where=f"node {n.name or n.op_type!r} ({n.op_type})", fix="Re-export the model")


class _Wrap:
    """Adapter so ir.topo_sort can order ONNX nodes (empty names are allowed in ONNX)."""

    def __init__(self, n):
        self.n = n
        self.name = n.name or n.op_type
        self.inputs = [i for i in n.input if i]
        self.outputs = list(n.output)


def _shape_of(c: _Ctx, onnx_name: str) -> tuple[int, ...]:
    if onnx_name in c.consts:
        return tuple(c.consts[onnx_name].shape)
    if onnx_name in c.shapes:
        return c.shapes[onnx_name]
    raise ModelError(f"tensor {onnx_name!r} has no known shape", fix="Export the model with static shapes")


def _const_value(c: _Ctx, name: str) -> np.ndarray | None:
    return c.consts.get(name)


def _out(c: _Ctx, node, shape_onnx, dtype="float32", quant=None) -> str:
    o = node.output[0]
    c.shapes[o] = tuple(shape_onnx)
    return c.add_tensor(o, _nhwc(tuple(shape_onnx)), dtype, quant)


def _lower_node(c: _Ctx, n) -> None:
    op, a = n.op_type, _attrs(n)
    where = f"node {n.name or n.op_type!r} ({op})"
    ins = [i for i in n.input]

    if op == "Constant":
        c.consts[n.output[0]] = _to_array(a["value"], where) if "value" in a else np.array(
            a.get("value_float", a.get("value_int", 0)))
        return
    if op in ("Identity", "Dropout"):
        src = ins[0]
        if src in c.consts:
            c.consts[n.output[0]] = c.consts[src]
            if src in c.qconsts:
                c.qconsts[n.output[0]] = c.qconsts[src]
        else:
            c.alias[n.output[0]] = c.name(src)
            c.shapes[n.output[0]] = _shape_of(c, src)
        return

    if op == "DequantizeLinear":
        scale = c.consts.get(ins[1])
        zp = c.consts.get(ins[2]) if len(ins) > 2 and ins[2] else np.zeros((), np.int8)
        if scale is None:
            raise UnsupportedError("DequantizeLinear with a non-constant scale", where=where)
        _check_scale(scale, where)
        axis = a.get("axis", 1) if scale.size > 1 else None
        if ins[0] in c.consts:  # quantized constant: keep both forms
            q = c.consts[ins[0]]
            shp = [1] * q.ndim
            if axis is not None:
                shp[axis] = -1
            f = (q.astype(np.float64) - zp.astype(np.float64).reshape(shp)) * scale.astype(np.float64).reshape(shp)
            c.consts[n.output[0]] = f.astype(np.float32)
            c.qconsts[n.output[0]] = (q, scale.astype(np.float32), zp.astype(np.int32), axis)
            return
        if scale.size > 1:
            raise UnsupportedError("per-channel quantized activations", where=where,
                                   fix="Quantize activations per tensor")
        src = c.name(ins[0])
        qp = ir.QuantParams(scale, zp.astype(np.int32))
        st = c.g.tensors[src]
        if st.quant is None:
            st.quant = qp
        o = _out(c, n, _shape_of(c, ins[0]))
        c.flat_chw.update({o: c.flat_chw[src]} if src in c.flat_chw else {})
        c.add_node(n.name, "dequantize", [src], [o])
        return
    if op == "QuantizeLinear":
        scale = c.consts.get(ins[1])
        zp = c.consts.get(ins[2]) if len(ins) > 2 and ins[2] else np.zeros((), np.uint8)
        if scale is None or scale.size != 1:
            raise UnsupportedError("QuantizeLinear needs a constant per-tensor scale", where=where)
        _check_scale(scale, where)
        if zp.dtype not in (np.int8, np.int16):
            raise UnsupportedError(f"{zp.dtype} quantization (edgecomp's int8 scheme is signed)", where=where,
                                   fix="Quantize with QuantType.QInt8 for activations and weights (S8S8), "
                                       "or QInt16 activations (16x8)")
        if zp.dtype == np.int16 and np.any(zp != 0):
            raise UnsupportedError("asymmetric int16 activations", where=where,
                                   fix="Quantize int16 activations symmetrically (ActivationSymmetric=True)")
        if ins[0] in c.consts:
            raise UnsupportedError("QuantizeLinear of a constant", where=where)
        src = c.name(ins[0])
        o = _out(c, n, _shape_of(c, ins[0]), "int16" if zp.dtype == np.int16 else "int8",
                 ir.QuantParams(scale, zp.astype(np.int32)))
        c.flat_chw.update({o: c.flat_chw[src]} if src in c.flat_chw else {})
        c.add_node(n.name, "quantize", [src], [o])
        return

    x = c.name(ins[0])
    if x not in c.g.tensors:
        raise UnsupportedError(f"{op} on a constant input", where=where, fix="Fold constants before export")
    if c.g.tensors[x].dtype != "float32" and op not in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        # In a QDQ graph every op reads a DequantizeLinear's float output; an op on the integers
        # of a QuantizeLinear would become a float kernel called on int8 data (C that does not compile).
        raise UnsupportedError(f"{op} on the {c.g.tensors[x].dtype} output of a QuantizeLinear", where=where,
                               fix="In a QDQ graph, put a DequantizeLinear before the op (quantize with "
                                   "onnxruntime.quantization)")
    xs = _shape_of(c, ins[0])

    if op == "Conv":
        _lower_conv(c, n, a, x, xs, where)
    elif op == "BatchNormalization":
        _lower_bn(c, n, x, where)
    elif op in ("Gemm", "MatMul"):
        _lower_gemm(c, n, a, x, xs, where)
    elif op in ("Relu", "Clip"):
        lo, hi = 0.0, math.inf
        if op == "Clip":
            lo = float(c.consts[ins[1]]) if len(ins) > 1 and ins[1] else float(a.get("min", -math.inf))
            hi = float(c.consts[ins[2]]) if len(ins) > 2 and ins[2] else float(a.get("max", math.inf))
        o = _out(c, n, xs)
        c.add_node(n.name, "clamp", [x], [o], act=(lo, hi))
    elif op in ("MaxPool", "AveragePool", "GlobalAveragePool"):
        _lower_pool(c, n, a, x, xs, where)
    elif op == "Add":
        y = c.name(ins[1])
        if ins[1] in c.consts or y not in c.g.tensors:
            raise UnsupportedError("Add with a constant operand", where=where,
                                   fix="Fold the constant into the previous layer's bias")
        ys = _shape_of(c, ins[1])
        if tuple(xs) != tuple(ys):
            raise UnsupportedError(f"Add with broadcasting ({xs} + {ys})", where=where,
                                   fix="Give both operands the same shape")
        o = _out(c, n, xs)
        c.add_node(n.name, "add", [x, y], [o], act=(-math.inf, math.inf))
    elif op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        oshape = c.shapes.get(n.output[0])
        if oshape is None:
            raise ModelError(f"{op} output has no static shape", where=where)
        if op == "Reshape" and len(ins) > 1 and ins[1] in c.consts and c.consts[ins[1]].size <= 8:
            tgt = [int(v) for v in np.asarray(c.consts[ins[1]]).reshape(-1)]  # the target shape, as ONNX reads it
            tgt = [xs[i] if v == 0 and i < len(xs) else v for i, v in enumerate(tgt)]
            if -1 not in tgt and math.prod(tgt) != math.prod(xs):
                raise ModelError(f"Reshape from {tuple(xs)} to {tuple(tgt)} changes the number of elements",
                                 where=where, fix="Check the model's shapes")
        if math.prod(oshape) != math.prod(xs):
            raise ModelError(f"{op} from {tuple(xs)} to {tuple(oshape)} changes the number of elements",
                             where=where, fix="Check the model's shapes")
        o = n.output[0]
        c.shapes[o] = oshape
        c.add_tensor(o, oshape)  # keep ONNX shape (2-D etc.); 4-D outputs are rare here
        if len(xs) == 4 and len(oshape) != 4:
            N, C, H, W = xs
            if H * W > 1 and C > 1:
                c.flat_chw[o] = (C, H, W)
        elif len(oshape) == 4 and len(xs) == 4 and tuple(oshape) != tuple(xs):
            raise UnsupportedError(f"{op} between 4-D shapes {xs} -> {oshape}", where=where)
        elif len(oshape) == 4:
            c.g.tensors[o].shape = _nhwc(oshape)
        c.add_node(n.name, "reshape", [x], [o], shape=c.g.tensors[o].shape)
    elif op == "Softmax":
        axis = a.get("axis", -1)
        if axis not in (-1, len(xs) - 1):
            raise UnsupportedError(f"Softmax over axis {axis}", where=where, fix="Apply softmax over the last axis")
        o = _out(c, n, xs)
        c.add_node(n.name, "softmax", [x], [o], beta=1.0)
    elif op == "Concat":
        axis = a["axis"] % len(xs)
        names = [c.name(i) for i in ins]
        if any(i in c.consts for i in ins):
            raise UnsupportedError("Concat with a constant operand", where=where)
        shp = list(xs)
        shp[axis] = sum(_shape_of(c, i)[axis] for i in ins)
        o = _out(c, n, shp)
        c.add_node(n.name, "concat", names, [o], axis=NCHW_TO_NHWC_AXIS[axis] if len(xs) == 4 else axis)
    else:  # pragma: no cover - filtered by SUPPORTED
        raise UnsupportedError(f"unsupported op {op}", where=where)


def _check_scale(scale: np.ndarray, where: str) -> None:
    """A quantization scale is a positive, finite, sane float (every kernel divides by it)."""
    s = np.asarray(scale)
    if s.dtype.kind != "f" or s.size == 0:
        raise ModelError(f"quantization scale of type {s.dtype}", where=where, fix="Use float32 scales")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(s < 1e-30) or np.any(s > 1e30):
        bad = s[~(np.isfinite(s) & (s > 1e-30) & (s <= 1e30))]
        raise ModelError(f"quantization scale {float(bad.reshape(-1)[0]):g} is not a positive, finite number",
                         where=where, fix="Quantize the model again (calibration data with NaN, infinite or "
                                          "constant values gives such scales)")


def _weight(c: _Ctx, name: str, where: str) -> np.ndarray:
    w = c.consts.get(name)
    if w is None:
        raise UnsupportedError(f"weight {name!r} is not a constant", where=where,
                               fix="Export with constant weights (do_constant_folding=True)")
    return w


def _pads(a: dict, xs, ks, strides, dil, where) -> tuple[int, int, int, int]:
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


def _lower_conv(c: _Ctx, n, a, x, xs, where):
    w = _weight(c, n.input[1], where)
    if w.ndim != 4 or len(xs) != 4:
        raise UnsupportedError(f"{w.ndim - 2}-D convolution", where=where, fix="Use 2-D convolutions (Conv2d)")
    O, Ig, KH, KW = w.shape
    group = a.get("group", 1)
    strides = tuple(a.get("strides", [1, 1]))
    dil = tuple(a.get("dilations", [1, 1]))
    pad = _pads(a, xs, (KH, KW), strides, dil, where)
    Cin = xs[1]
    Ho = ir.conv_output_size(xs[2], KH, strides[0], dil[0], pad[0], pad[2])
    Wo = ir.conv_output_size(xs[3], KW, strides[1], dil[1], pad[1], pad[3])
    if group == 1:
        op, perm, qaxis = "conv2d", (0, 2, 3, 1), 0
        attrs = {}
    elif group == Cin and Ig == 1 and O % Cin == 0:
        op, perm, qaxis = "depthwise_conv2d", (1, 2, 3, 0), 3
        attrs = {"depth_multiplier": O // Cin}
    else:
        raise UnsupportedError(f"grouped convolution (group={group})", where=where,
                               fix="Use group=1 or depthwise (group = input channels)")
    wname = _ir_const(c, n.input[1], perm, qaxis)
    inputs = [x, wname]
    if len(n.input) > 2 and n.input[2]:
        inputs.append(_ir_const(c, n.input[2], None, 0))
    o = _out(c, n, (xs[0], O, Ho, Wo))
    c.add_node(n.name, op, inputs, [o], stride=strides, dilation=dil, pad=pad, act=(-math.inf, math.inf), **attrs)


def _ir_const(c: _Ctx, onnx_name: str, perm, qaxis) -> str:
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


def _lower_bn(c: _Ctx, n, x, where):
    scale, bias, mean, var = (_weight(c, i, where).astype(np.float64) for i in n.input[1:5])
    eps = _attrs(n).get("epsilon", 1e-5)
    k = scale / np.sqrt(var + eps)
    prod = c.g.producer(x)
    if prod is None or prod.op not in ("conv2d", "depthwise_conv2d") or len(c.g.consumers(x)) != 1 \
            or x in c.g.outputs or c.g.meta.get("qconst", {}).get(prod.inputs[1]) is not None:
        raise UnsupportedError("BatchNormalization that does not follow a float convolution", where=where,
                               fix="Fold batch-norm into the convolution before export (model.eval())")
    w = c.g.tensors[prod.inputs[1]]
    if prod.op == "conv2d":
        w.data = (w.data * k.reshape(-1, 1, 1, 1)).astype(np.float32)
    else:
        w.data = (w.data * k.reshape(1, 1, 1, -1)).astype(np.float32)
    b = c.g.tensors[prod.inputs[2]].data.astype(np.float64) if len(prod.inputs) > 2 else np.zeros_like(k)
    nb = ((b - mean) * k + bias).astype(np.float32)
    if len(prod.inputs) > 2:
        c.g.tensors[prod.inputs[2]].data = nb
    else:
        prod.inputs.append(c.const(prod.name + "_bias", nb))
    c.alias[n.output[0]] = x
    c.shapes[n.output[0]] = c.shapes.get(n.input[0], ())


def _lower_gemm(c: _Ctx, n, a, x, xs, where):
    w = _weight(c, n.input[1], where)
    if n.op_type == "Gemm":
        if a.get("transA", 0):
            raise UnsupportedError("Gemm with transA=1", where=where)
        if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            if n.input[1] in c.qconsts:
                raise UnsupportedError("quantized Gemm with alpha/beta != 1", where=where)
            w = w * a.get("alpha", 1.0)
        trans = bool(a.get("transB", 0))
    else:
        if w.ndim != 2 or len(xs) != 2:
            raise UnsupportedError("MatMul other than [N,K] x [K,O]", where=where)
        trans = False
    perm = None if trans else (1, 0)
    if w.shape != c.consts[n.input[1]].shape:  # alpha folded
        c.consts[n.input[1]] = w
    wname = _ir_const(c, n.input[1], perm, 0)
    wt = c.g.tensors[wname]
    O, I = wt.shape
    if x in c.flat_chw:  # ONNX flattened (C,H,W); our tensor is (H,W,C): permute weight columns
        C, H, W = c.flat_chw[x]
        idx = np.arange(C * H * W).reshape(C, H, W).transpose(1, 2, 0).reshape(-1)
        wt.data = wt.data[:, idx]
        qc = c.g.meta.get("qconst", {}).get(wname)
        if qc is not None:
            c.g.meta["qconst"][wname] = (qc[0][:, idx], *qc[1:])
    inputs = [x, wname]
    if len(n.input) > 2 and n.input[2]:
        b = c.consts.get(n.input[2])
        if b is None or b.size != O:
            raise UnsupportedError("Gemm bias that is not a constant vector of the output size", where=where)
        if n.op_type == "Gemm" and a.get("beta", 1.0) != 1.0:
            c.consts[n.input[2]] = b * a["beta"]
        inputs.append(_ir_const(c, n.input[2], None, 0))
    if len(xs) != 2 or xs[1] != I:
        raise UnsupportedError(f"fully connected input of shape {xs} for weights {O}x{I}", where=where,
                               fix="Flatten the input to [N, features] before the linear layer")
    o = _out(c, n, (xs[0], O))
    c.add_node(n.name, "fully_connected", inputs, [o], act=(-math.inf, math.inf))


def _lower_pool(c: _Ctx, n, a, x, xs, where):
    if len(xs) != 4:
        raise UnsupportedError("pooling on a non-4-D tensor", where=where)
    if n.op_type == "GlobalAveragePool":
        k, s, pad = (xs[2], xs[3]), (1, 1), (0, 0, 0, 0)
        op = "avg_pool2d"
    else:
        k = tuple(a["kernel_shape"])
        s = tuple(a.get("strides", [1, 1]))
        if a.get("ceil_mode", 0):
            raise UnsupportedError("pooling with ceil_mode=1", where=where, fix="Use ceil_mode=False")
        if tuple(a.get("dilations", [1, 1])) != (1, 1):
            raise UnsupportedError("dilated pooling", where=where)
        pad = _pads(a, xs, k, s, (1, 1), where)
        op = "max_pool2d" if n.op_type == "MaxPool" else "avg_pool2d"
        if op == "avg_pool2d" and a.get("count_include_pad", 0) and any(pad):
            raise UnsupportedError("AveragePool with count_include_pad=1 and padding", where=where,
                                   fix="Use count_include_pad=False (TFLite semantics)")
    Ho = ir.conv_output_size(xs[2], k[0], s[0], 1, pad[0], pad[2])
    Wo = ir.conv_output_size(xs[3], k[1], s[1], 1, pad[1], pad[3])
    o = _out(c, n, (xs[0], xs[1], Ho, Wo))
    c.add_node(n.name, op, [x], [o], kernel=k, stride=s, pad=pad, act=(-math.inf, math.inf))


FUSABLE = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "max_pool2d", "avg_pool2d")


def _fuse_activations(g: ir.Graph) -> None:
    """Fold float clamp nodes into the op that produces their input."""
    changed = True
    while changed:
        changed = False
        for n in list(g.nodes):
            if n.op != "clamp":
                continue
            src = n.inputs[0]
            p = g.producer(src)
            if p is None or p.op not in FUSABLE or len(g.consumers(src)) != 1 or src in g.outputs:
                continue
            lo, hi = p.attrs["act"]
            nlo, nhi = n.attrs["act"]
            p.attrs["act"] = (max(lo, nlo), min(hi, nhi))
            p.outputs = [n.outputs[0]]
            g.nodes.remove(n)
            del g.tensors[src]
            changed = True


# --------------------------------------------------------------------------- QDQ folding
INT_OPS = ("conv2d", "depthwise_conv2d", "fully_connected", "add", "max_pool2d", "avg_pool2d",
           "softmax", "reshape", "concat", "clamp")


def _same_quant(a: ir.QuantParams | None, b: ir.QuantParams | None) -> bool:
    return a is not None and b is not None and np.array_equal(a.scale, b.scale) and \
        np.array_equal(a.zero_point, b.zero_point)


#: Ops folded into int16 (16x8) integer ops; other int16 islands stay float (dequantize/quantize kept).
INT16_OPS = ("conv2d", "depthwise_conv2d", "fully_connected", "max_pool2d", "add", "avg_pool2d", "reshape", "clamp",
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
    if len(n.inputs) > 1 and g.tensors[n.inputs[1]].is_const:  # weights int8 (16x8), bias int32
        w = qconst.get(n.inputs[1])
        if w is None or w[0].dtype != np.int8:
            return False
        if len(n.inputs) > 2 and n.inputs[2] in qconst and qconst[n.inputs[2]][0].dtype != np.int32:
            return False
    return True


def fold_qdq(g: ir.Graph) -> ir.Graph:
    """Rewrite dequantize -> float op -> quantize islands into integer ops (in place)."""
    qconst = g.meta.get("qconst", {})
    for n in list(g.nodes):
        if n.op not in INT_OPS:
            continue
        cons = g.consumers(n.outputs[0])
        if len(cons) != 1 or cons[0].op != "quantize" or n.outputs[0] in g.outputs:
            continue
        qnode = cons[0]
        if n.op in ("conv2d", "depthwise_conv2d", "fully_connected") and len(n.inputs) > 1 \
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
        if n.op == "concat":
            # concat moves int8 values without rescaling (TFLite's rule): requantize any input
            # whose parameters differ from the output's first (an int8 -> int8 quantize node)
            srcs = [s if _same_quant(g.tensors[s].quant, yquant) else _requantize_before(g, n, s, yquant)
                    for s in srcs]
        elif n.op == "avg_pool2d" and not _same_quant(g.tensors[srcs[0]].quant, yquant) and ydtype != "int16":
            continue  # an average rounded at the input's scale then rescaled loses precision: stays float
            # (the int16 kernel keeps 16 fraction bits of the mean and rescales once)
        elif n.op in ("max_pool2d", "reshape", "clamp") and not _same_quant(g.tensors[srcs[0]].quant, yquant):
            # single-input ops work in their input's quantization, then one requantize to the
            # output's (before pooling it would clip values that the average still needs)
            requant_after = yquant
        new_inputs = []
        for k, (orig, s) in enumerate(zip(n.inputs, srcs)):
            t = g.tensors[orig]
            if not t.is_const:
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
    _remove_dead(g)
    _cancel_qdq(g)
    _fuse_int16_clamps(g)
    _int_boundaries(g)
    _remove_dead(g)
    g.meta.pop("qconst", None)
    g.validate()
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


def _replace_uses(g: ir.Graph, old: str, new: str) -> None:
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    g.outputs = [new if o == old else o for o in g.outputs]


def _cancel_qdq(g: ir.Graph) -> None:
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
        if _same_quant(g.tensors[x].quant, g.tensors[q.outputs[0]].quant) and q.outputs[0] not in g.outputs:
            _replace_uses(g, q.outputs[0], x)
            g.nodes.remove(q)
            del g.tensors[q.outputs[0]]
        else:
            q.inputs = [x]
    _remove_dead(g)


def _fuse_int16_clamps(g: ir.Graph) -> None:
    """An int16 clamp (ORT keeps Relu/Clip as their own QDQ islands when activations are symmetric)
    after an int16 layer with the same quantization: fold its range into the layer's ``act``."""
    for n in list(g.nodes):
        if n.op != "clamp" or g.tensors[n.outputs[0]].dtype != "int16":
            continue
        src = n.inputs[0]
        p = g.producer(src)
        if p is None or p.op not in INT16_OPS[:6] or len(g.consumers(src)) != 1 or src in g.outputs \
                or not _same_quant(g.tensors[src].quant, g.tensors[n.outputs[0]].quant) \
                or g.tensors[src].dtype != "int16":
            continue
        lo, hi = p.attrs["act"]
        nlo, nhi = n.attrs["act"]
        p.attrs["act"] = (max(lo, nlo), min(hi, nhi))
        p.outputs = [n.outputs[0]]
        g.nodes.remove(n)
        del g.tensors[src]


def _int_boundaries(g: ir.Graph) -> None:
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
            _rename(g, q.outputs[0], i)
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
            _rename(g, p.inputs[0], o)
            new_outputs.append(o)
        else:
            new_outputs.append(o)
    g.outputs = new_outputs


def _rename(g: ir.Graph, old: str, new: str) -> None:
    """Give tensor ``old`` the name ``new`` (graph inputs/outputs keep their ONNX names)."""
    t = g.tensors.pop(old)
    t.name = new
    g.tensors[new] = t
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        n.outputs = [new if o == old else o for o in n.outputs]
    g.outputs = [new if o == old else o for o in g.outputs]


def _remove_dead(g: ir.Graph) -> None:
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


def from_onnx(path: str | Path, name: str | None = None) -> ir.Graph:
    """Load an ONNX file (float or QDQ int8) and lower it to the IR."""
    model = load_onnx(path)
    g = lower(model, name or Path(path).stem)
    if any(n.op in ("quantize", "dequantize") for n in g.nodes):
        try:
            fold_qdq(g)
        except (ModelError, UnsupportedError):
            raise
        except Exception as e:
            raise _malformed("quantized graph", e) from None
    return g
