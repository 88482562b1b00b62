"""The C API of a model with several inputs or outputs (model.h / model.c), beside the one-input API.

A model of one input and one output keeps exactly the API it always had (``ec_input()``,
``ec_output()``, ``EC_INPUT_SIZE``, ``ec_run(in, out)``...).  With several, those still name the
first input and the first output, and every input and output also gets its own functions named
after the model's tensor (a C identifier made of the name, :func:`edgecomp.sanitize.c_identifier`):

    EC_INPUT_SIZE_<id> / EC_OUTPUT_SIZE_<id>         elements
    ec_input_<id>() / ec_output_<id>()               the tensor in the arena
    ec_quantize_input_<id>() / ec_dequantize_output_<id>()
    ec_run(ec_in_<id>..., ec_out_<id>...)            one pointer per input, then per output (the
                                                     ec_ prefix: no tensor macro can take these names)
    ec_input_at(i), ec_output_at(i), ec_input_bytes[], ec_output_bytes[]   by index (the harness)

The harness (main.c) reads each sample's inputs one after the other from ``ec_input.bin`` and
writes each sample's outputs one after the other to ``ec_output.bin``, in the manifest's order.
"""
from __future__ import annotations

import numpy as np

from ... import ir
from ...errors import UnsupportedError
from ...sanitize import c_comment_text, c_identifier
from .literals import CTYPE, c_float, fmt_q, shape_text


def quantize_body(t: ir.Tensor, size: str) -> str:
    if t.dtype == "int8":
        return f"    ec_quantize_f32_s8(x, q, {size}, {c_float(t.quant.scale[0])}, {int(t.quant.zero_point[0])});"
    return f"    memcpy(q, x, {size} * sizeof(float));"


def dequantize_body(t: ir.Tensor, size: str) -> str:
    if t.dtype == "int8":
        return (f"    ec_dequantize_s8_f32(q, y, {size}, {c_float(float(np.float32(t.quant.scale[0])))}, "
                f"{int(t.quant.zero_point[0])});")
    return f"    memcpy(y, q, {size} * sizeof(float));"


def io_context(g: ir.Graph, tensor_id) -> dict:
    """The template context of the several-inputs/outputs API (``multi_io`` False: none of it)."""
    multi = len(g.inputs) > 1 or len(g.outputs) > 1
    if not multi:
        return {"multi_io": False, "io_inputs": [], "io_outputs": []}
    taken: set[str] = set()

    def one(name: str, kind: str) -> dict:
        t = g.tensors[name]
        ident = c_identifier(name, taken, prefix="t_")
        size = f"EC_{kind.upper()}_SIZE_{ident}"
        return {"id": ident, "size_macro": size, "size": t.size, "ctype": CTYPE[t.dtype],
                "tensor": tensor_id(name), "bytes": t.nbytes,
                "comment": c_comment_text(f"{name} {shape_text(t.shape)} {fmt_q(t)}"),
                "body": quantize_body(t, size) if kind == "input" else dequantize_body(t, size)}

    ins = [one(n, "input") for n in g.inputs]
    outs = [one(n, "output") for n in g.outputs]
    if set(g.inputs) & set(g.outputs):
        raise UnsupportedError("a graph input that is also a graph output", where=f"graph {g.name!r}",
                               fix="Remove the pass-through output from the model")
    return {"multi_io": True, "io_inputs": ins, "io_outputs": outs}
