"""Lowering an ONNX graph node by node into the IR, and the frontend's import passes.

Each ONNX op is lowered by one function registered with :func:`onnx_op` in an ``ops_*.py``
module of this package (one module per op family).  :func:`lower` checks every op is known,
infers shapes, adds the graph inputs (4-D NCHW inputs become NHWC tensors), and calls each
node's function in topological order; :data:`IMPORT_PASSES` then bring the graph to the
canonical IR (:func:`from_onnx`).
"""
from __future__ import annotations

from pathlib import Path

import onnx

from ... import ir
from ...errors import ModelError, UnsupportedError
from ...passes import Pass, dump_graph, run_passes
from ...passes.elementwise import fuse_affine
from ...passes.fuse_activations import fuse_activations
from ...passes.graph_edit import remove_dead, rename
from ...passes.qdq import cancel_qdq, fold_qdq, int_boundaries
from ...passes.qdq_recurrent import fold_recurrent
from . import (ops_activation, ops_binary, ops_conv, ops_data, ops_elementwise, ops_pool, ops_qdq,  # noqa: F401,E402
               ops_recurrent, ops_reduce, ops_resize, ops_shape)  # (their @onnx_op fill ONNX_OPS)
from . import ops_attention  # noqa: F401,E402  (after ops_conv: its MatMul hands 2-D x constant to lower_gemm)
from .context import Ctx, Wrap, check_attrs, malformed, nhwc, shape_of, value_shapes
from .fold import OWN, constant_nodes, fold, node_key, opset_of
from .layout import channels_last_layout, normal, set_layout, to_layout
from .one_d import declare_input_1d, feeds_1d
from .load import dtype_name, load_onnx, to_array
from .registry import ONNX_OPS


def lower_node(c: Ctx, n, folded: set[tuple] = frozenset()) -> None:
    op, a = n.op_type, {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
    where = f"node {n.name or n.op_type!r} ({op})"
    if op not in OWN and node_key(n) in folded:  # every input a constant: computed now
        fold(c, n, c.opset, where)
        return
    spec = ONNX_OPS.get(op)
    if spec is None:  # pragma: no cover - lower() refuses unknown ops first
        raise UnsupportedError(f"unsupported op {op}", where=where)
    if not spec.activation:
        spec.lower(c, n, a, where)
        return
    x = c.name(n.input[0])
    if x not in c.g.tensors:
        raise UnsupportedError(f"{op} on a constant input", where=where, fix="Fold constants before export")
    if c.g.tensors[x].dtype != "float32" and op not in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        # In a QDQ graph every op reads a DequantizeLinear's float output; an op on the integers
        # of a QuantizeLinear would become a float kernel called on int8 data (C that does not compile).
        raise UnsupportedError(f"{op} on the {c.g.tensors[x].dtype} output of a QuantizeLinear", where=where,
                               fix="In a QDQ graph, put a DequantizeLinear before the op (quantize with "
                                   "onnxruntime.quantization)")
    spec.lower(c, n, a, x, shape_of(c, n.input[0]), where)


def lower(model: onnx.ModelProto, name: str | None = None, *, fuse: bool = True) -> ir.Graph:
    """Translate an ONNX graph (float or QDQ) into a float-op IR graph in NHWC (``fuse``: with
    Relu/Clip folded into their producers, the first of IMPORT_PASSES)."""
    folded = constant_nodes(model.graph.node, {t.name for t in model.graph.initializer})
    bad = [n for n in model.graph.node if node_key(n) not in folded
           and (n.op_type not in ONNX_OPS or n.domain not in ("", "ai.onnx"))]
    if bad:
        from ..alternatives import refusal
        ops = sorted({n.op_type for n in bad})
        count = {op: sum(n.op_type == op for n in bad) for op in ops}
        nodes = ", ".join(f"{n.name or '(unnamed)'} ({n.op_type})" for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise refusal(f"unsupported ONNX ops: {', '.join(f'{op} (x{count[op]})' for op in ops)}",
                      f"nodes {nodes}", ops, "onnx", list(ONNX_OPS))
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed: {str(e)[:200]}",
                         fix="Export the model with static shapes") from None
    g = ir.Graph(name or model.graph.name or "model", {}, [], [], [], {"source": "onnx", "input_layout": "NHWC",
                                                                      "source_layout": "NCHW"})
    c = Ctx(g, opset=opset_of(model))
    c.used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for t in model.graph.initializer:
        c.consts[t.name] = to_array(t)
    c.shapes = value_shapes(model)
    inits = set(c.consts)
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if vi.name not in c.shapes:
            raise ModelError(f"input {vi.name!r} has no static shape", fix="Export with a fixed input shape")
        elem = vi.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            raise UnsupportedError(f"input {vi.name!r} has element type {dtype_name(elem)}",
                                   fix="Use a float32 model input")
        c.add_tensor(vi.name, nhwc(c.shapes[vi.name]))
        if len(c.shapes[vi.name]) == 4:  # a 4-D input is NHWC in the IR (the API transposes the user's NCHW)
            set_layout(c, vi.name, channels_last_layout(c.shapes[vi.name]))
        elif len(c.shapes[vi.name]) == 3 and feeds_1d(model, vi.name):  # [N, C, L] -> [N, 1, L, C]
            declare_input_1d(c, vi.name, c.shapes[vi.name])
        g.inputs.append(vi.name)
    try:
        nodes = ir.topo_sort([Wrap(n) for n in model.graph.node], g.inputs, inits)
    except ValueError as e:
        raise ModelError(str(e), fix="Check the model graph") from None
    for w in nodes:
        try:
            check_attrs(w.n)
            lower_node(c, w.n, folded)
        except (ModelError, UnsupportedError):
            raise
        except Exception as e:  # a malformed node the checks above did not name: still one clear error
            raise malformed(f"node {w.n.name or w.n.op_type!r} ({w.n.op_type})", e) from None
    for o in model.graph.output:
        nm = c.name(o.name)
        if nm not in g.tensors:
            raise ModelError(f"graph output {o.name!r} is not produced by any supported node")
        out = _output_layout(c, nm, o.name)  # (may rename tensors: g.outputs is rebuilt)
        g.outputs.append(out)
    g.meta["onnx_inputs"] = [i for i in g.inputs]
    g.meta["onnx_outputs"] = [o.name for o in model.graph.output]
    try:
        if fuse:
            fuse_activations(g)
        g.validate()
    except Exception as e:
        raise malformed("graph", e) from None
    return g


def _output_layout(c: Ctx, nm: str, onnx_name: str) -> str:
    """A graph output as the API hands it over: NHWC for 4-D tensors (transposed back to NCHW for
    the user), ONNX order else.  The output keeps the name of the tensor it was made from."""
    s = tuple(c.shapes.get(onnx_name) or c.shapes.get(nm) or c.g.tensors[nm].shape)
    want = channels_last_layout(s) if len(s) == 4 else None
    want_shape = nhwc(s)
    if normal(c.layouts.get(nm)) == normal(want) and tuple(c.g.tensors[nm].shape) == want_shape:
        return nm
    inner = nm + "_in_layout"
    rename(c.g, nm, inner)
    c.layouts[inner] = c.layouts.pop(nm, None) or c.layouts.pop(inner, None)
    if c.layouts[inner] is None:
        del c.layouts[inner]
    y = to_layout(c, inner, s, want, shape=want_shape)
    rename(c.g, y, nm)
    return nm


#: The rewrites the ONNX frontend's output goes through before anything reads it (the canonical
#: IR: activations fused, QDQ islands folded into integer ops, int8 graph inputs and outputs).
IMPORT_PASSES = [
    Pass("fuse_activations", fuse_activations, "Relu / Clip folded into the op before them"),
    Pass("fuse_affine", fuse_affine, "affine after affine (constant Sub / Add / Mul / Div) as one"),
    Pass("fold_qdq", fold_qdq, "dequantize -> op -> quantize islands become int8 / int16 ops"),
    Pass("fold_recurrent", fold_recurrent, "dequantize -> lstm / gru -> quantize become int8 recurrent layers"),
    Pass("cancel_qdq", cancel_qdq, "quantize(dequantize(x)) dropped or made an int -> int requantize"),
    Pass("fuse_int_activations", fuse_activations, "int16 clamps with their producer's quantization folded"),
    Pass("int_boundaries", int_boundaries, "int8 graph inputs and outputs where only quantized"),
    Pass("remove_dead", remove_dead, "nodes and tensors nothing reads"),
]


def from_onnx(path: str | Path, name: str | None = None, *, dump: str | Path | None = None) -> ir.Graph:
    """Load an ONNX file (float or QDQ int8/int16) and lower it to the canonical IR.

    ``dump``: a folder to write the graph into after lowering and after each of IMPORT_PASSES."""
    model = load_onnx(path)
    g = lower(model, name or Path(path).stem, fuse=False)
    if dump is not None:
        dump_graph(g, Path(dump) / "00_onnx.txt", "onnx (lowered)")
    quantized = any(n.op in ("quantize", "dequantize") for n in g.nodes)
    passes = IMPORT_PASSES if quantized else IMPORT_PASSES[:2] + IMPORT_PASSES[-1:]
    try:
        return run_passes(g, passes, dump=dump, first_index=1)
    except (ModelError, UnsupportedError):
        raise
    except Exception as e:
        raise malformed("quantized graph" if quantized else "graph", e) from None
