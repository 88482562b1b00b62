"""Reading an ONNX file safely: size limits, names that are text, external data confined to the
model's folder, tensors converted to numpy."""
from __future__ import annotations

import math
import re
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import ModelError, UnsupportedError

MAX_ELEMENTS = 1 << 28  # refuse absurd declared shapes before allocating anything
#: Attributes that must be small positive (or, for pads, non-negative) integers.
POSITIVE_INTS = ("strides", "dilations", "kernel_shape", "group")
ATTR_LIMIT = 1 << 16


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
    from onnx.external_data_helper import (
        load_external_data_for_tensor,
        uses_external_data,
    )

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


def dtype_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return f"<unknown {elem}>"


def to_array(t: onnx.TensorProto, where: str | None = None) -> np.ndarray:
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
    types, shapes that do not agree (ONNX's strict shape inference with constant propagation: a
    Reshape to the wrong element count), and tensors whose inferred shape has more than 2^28
    elements.  What remains (a Loop
    with a huge trip count) is bounded by calibrate.py's time and memory limits.
    """
    for n in _all_nodes(model.graph):
        check_attrs(n)
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i not in onnx.TensorProto.DataType.values():
                raise ModelError(f"Cast to unknown element type {a.i}", where=f"node {n.name or n.op_type!r} (Cast)",
                                 fix="Re-export the model")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                         where=where, fix="Export the model with static shapes") from None
    try:  # what ONNX Runtime checks when it loads (or, for constant shapes, first runs) the model
        onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        m = re.search(r"\(op_type:(\w+)(?:, node name: (.*?))?\): \[\w+\] (.*)", first)
        what, at = (m.group(3), f"node {m.group(2) or m.group(1)!r} ({m.group(1)})") if m else (first, where)
        raise ModelError(f"the model's shapes do not agree: {what[:240]}", where=at,
                         fix="Re-export the model; ONNX Runtime would refuse it when it runs") from None
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


def check_attrs(n) -> None:
    """Refuse absurd spatial attributes with a clear message before any arithmetic uses them."""
    for a in n.attribute:
        if a.name not in POSITIVE_INTS + ("pads",):
            continue
        vals = list(a.ints) if a.type == onnx.AttributeProto.INTS else [a.i]
        lo = 0 if a.name == "pads" else 1
        if a.type not in (onnx.AttributeProto.INTS, onnx.AttributeProto.INT) or \
                any(v < lo or v > ATTR_LIMIT for v in vals):
            raise ModelError(f"attribute {a.name}={vals} is out of range [{lo}, {ATTR_LIMIT}]",
                             where=f"node {n.name or n.op_type!r} ({n.op_type})", fix="Re-export the model")
