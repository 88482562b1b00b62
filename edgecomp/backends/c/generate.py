"""The C backend's passes and its output: ir.Graph -> model.h, model.c, weights.c, kernels.

:data:`C_PASSES` lower a canonical graph for the C kernels (checks, residual fusion,
requantization, kernel planning, memory planning); :func:`emit` writes the files of the
"C bundle API" (docs/internals.md): ``model.c`` holds one readable call per layer with a comment
giving op, shapes and quantization, the const parameter block of every layer and the arena
with tensor offsets; ``weights.c`` holds weights, biases and requantization multipliers/shifts as
const arrays (flash); the kernel sources a layer uses are copied from ``templates/cortex_m/kernels``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ... import ir
from ...errors import ModelError, UnsupportedError
from ...options import CodegenOptions
from ...passes import Pass, run_passes
from ...passes.elementwise import fold_luts
from ...passes.fuse_residual import fuse_residual_adds
from ...passes.graph_edit import working_copy
from ...passes.memory_plan import MemoryPlan
from ...passes.requantize import requantize
from ...passes.streaming import stream_frames
from ...resources import template_env
from ...sanitize import c_comment_text, c_string
from .emitter import Emitter
from .io_api import io_context
from .kernel_plan import plan_kernels, plan_memory_pass
from .kernels.catalogue import GROUP_HEADERS, files_for, layer_dtype, write_kernel_files
from .literals import CTYPE, c_float, fmt_q, shape_text

MODEL_FILES = ("model.h", "model.c", "weights.c")


@dataclass
class CodegenInfo:
    arena_bytes: int  # the static activation arena (inputs, outputs, scratch rows included)
    scratch_bytes: int  # largest row scratch buffer (inside the arena)
    static_bytes: int  # other RAM of the generated code (the probe's tick array)
    weight_bytes: int  # const data in weights.c (flash)
    layers: list[dict[str, Any]]  # [{name, op, out_shape, macs, kernel}]
    offsets: dict[str, int]  # tensor name -> arena offset
    files: list[str] = field(default_factory=list)
    plan: MemoryPlan | None = None


def check_c_graph(graph: ir.Graph, opts: CodegenOptions | None = None) -> ir.Graph:
    """What the C bundle API takes: inputs and outputs (int8 or float32, quantized when int8; an
    int32 output too: the indices of an argmax; several of each: io_api.py), at least one layer, one
    output per node except for ops with several (split)."""
    if not graph.inputs or not graph.outputs:
        raise UnsupportedError(f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs",
                               where=f"graph {graph.name!r}", fix="The C backend takes at least one input and output")
    if not graph.nodes:
        raise ModelError("the graph has no layers", where=f"graph {graph.name!r}")
    for name in graph.inputs + graph.outputs:
        t = graph.tensors[name]
        if t.dtype not in ("int8", "float32") and not (t.dtype == "int32" and name in graph.outputs):
            raise UnsupportedError(f"{t.dtype} model input/output {name!r}", where=f"graph {graph.name!r}",
                                   fix="Use int8 or float32 inputs and outputs")
        if t.dtype == "int8" and t.quant is None:
            raise ModelError(f"int8 tensor {name!r} has no quantization", where=f"graph {graph.name!r}")
    for node in graph.nodes:
        if len(node.outputs) != 1 and not (node.outputs and ir.OPS[node.op].many_outputs):
            raise UnsupportedError(f"{node.op} with {len(node.outputs)} outputs", where=f"node {node.name!r}")
    return graph


#: The C backend's lowering, after the frontend's import passes.
C_PASSES = [
    Pass("check_c", check_c_graph, "the graph is one the C bundle API can take"),
    Pass("stream_frames", stream_frames, "with --streaming: one frame per inference, recurrent state kept"),
    Pass("fold_luts", fold_luts, "luts, int8 clamps and binary ops of one tensor composed into one table"),
    Pass("fuse_residual", fuse_residual_adds, "a residual add folded into the convolution producing an operand"),
    Pass("requantize", requantize, "Q31 multipliers and shifts of every integer op, as TFLM computes them"),
    Pass("plan_kernels", plan_kernels, "which optimized kernel runs each layer (matrix product, workspaces)"),
    Pass("plan_memory", plan_memory_pass, "arena offsets of every tensor, scratch row and workspace"),
]


def lower(graph: ir.Graph, opts: CodegenOptions, *, dump: str | Path | None = None, first_index: int = 50) -> ir.Graph:
    """A copy of ``graph`` through :data:`C_PASSES` (the input graph is left as it is)."""
    try:
        graph.validate()
    except ValueError as e:
        raise ModelError(str(e), where=f"graph {graph.name!r}", fix="Re-export the model") from None
    return run_passes(working_copy(graph), C_PASSES, opts, dump=dump, first_index=first_index)


def emit(g: ir.Graph, out_dir: Path, *, name: str, opts: CodegenOptions) -> CodegenInfo:
    """Write the C files of a lowered graph (see :func:`lower`) into ``out_dir``."""
    plan: MemoryPlan = g.meta["memory_plan"]
    gen = Emitter(g, plan, name, opts)
    for i, node in enumerate(g.nodes):
        gen.layer(i, node)
    s16 = any(layer_dtype(g, n) == "int16" for n in g.nodes)
    groups = gen.groups | ({"s16"} if s16 else set())
    # the reserved runtime identifiers are not used by sanitize (no ec_ prefix)
    in_t, out_t = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    in_id, out_id = gen.tensor(in_t.name), gen.tensor(out_t.name)
    if in_t.dtype == "int8":
        qi = in_t.quant
        qin = f"    ec_quantize_f32_s8(x, q, EC_INPUT_SIZE, {c_float(qi.scale[0])}, {int(qi.zero_point[0])});"
    else:
        qin = "    memcpy(q, x, EC_INPUT_SIZE * sizeof(float));"
    if out_t.dtype == "int8":
        qo = out_t.quant
        dqo = (f"    ec_dequantize_s8_f32(q, y, EC_OUTPUT_SIZE, {c_float(qo.scale[0])}, "
               f"{int(qo.zero_point[0])});")
    elif out_t.dtype == "int32":  # indices (argmax): as floats
        dqo = "    for (int32_t i = 0; i < EC_OUTPUT_SIZE; i++)\n        y[i] = (float)q[i];"
    else:
        dqo = "    memcpy(y, q, EC_OUTPUT_SIZE * sizeof(float));"
    env = template_env("cortex_m")
    dtype_note = ("int16" if s16 else "int8") if g.quantized else "float32"
    ctx = dict(
        model_comment=c_comment_text(repr(name) if name else "model"), model_string=c_string(name),
        input_comment=c_comment_text(f"{in_t.name} {shape_text(in_t.shape)} {fmt_q(in_t)}"),
        output_comment=c_comment_text(f"{out_t.name} {shape_text(out_t.shape)} {fmt_q(out_t)}"),
        input_size=in_t.size, output_size=out_t.size, arena_bytes=plan.arena_bytes,
        num_layers=len(g.nodes), in_ctype=CTYPE[in_t.dtype], out_ctype=CTYPE[out_t.dtype],
        macs=ir.total_macs(g), dtype_note=dtype_note, extern_decls=gen.externs, plan_end=plan.end(),
        tensor_macros=gen.tensor_macros, params=gen.params,
        layer_names=[c_string(n.name) for n in g.nodes], layer_ops=[c_string(n.op) for n in g.nodes],
        input_tensor=in_id, output_tensor=out_id, layer_code=gen.code,
        quantize_input_body=qin, dequantize_output_body=dqo,
        weight_bytes=gen.weight_bytes, arrays=gen.arrays,
        extra_includes=[f'#include "{h}"' for grp, h in GROUP_HEADERS.items() if grp in groups],
        state_bytes=gen.state_bytes, state_resets=gen.state_resets, streaming=bool(g.meta.get("streaming")),
        **io_context(g, gen.tensor),
    )
    fused = g.meta.get("row_fusions", {})
    for i, lay in enumerate(gen.layers):  # row fusion: the producer's time is counted in the consumer's
        if lay["name"] in fused:
            lay["fused_into"] = gen.layers[i + 1]["name"]
    texts = {f: env.get_template(f + ".j2").render(**ctx) for f in MODEL_FILES}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, text in texts.items():
        (out_dir / f).write_text(text)
    kernel_files = write_kernel_files(out_dir, files_for(groups))  # flat, from the family folders
    return CodegenInfo(
        arena_bytes=plan.arena_bytes,
        scratch_bytes=max((n for _, n in plan.scratch.values()), default=0),
        static_bytes=(4 * len(g.nodes) if opts.probe else 0) + gen.state_bytes,
        weight_bytes=gen.weight_bytes,
        layers=gen.layers,
        offsets=dict(plan.offsets),
        files=list(MODEL_FILES) + kernel_files,
        plan=plan,
    )


def generate(graph: ir.Graph, out_dir: str | Path, *, name: str = "model", options: CodegenOptions | None = None,
             dump: str | Path | None = None) -> CodegenInfo:
    """Lower ``graph`` (:data:`C_PASSES`) and write its C files into ``out_dir``.

    ``options``: :class:`~edgecomp.options.CodegenOptions` (reference kernels, balanced, probe on
    by default); ``dump``: a folder for the graph after each pass (``--dump-ir``)."""
    opts = options or CodegenOptions()
    return emit(lower(graph, opts, dump=dump), Path(out_dir), name=name, opts=opts)
