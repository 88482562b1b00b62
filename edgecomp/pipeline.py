"""The compile pipeline: a model file in, C for a microcontroller out, as a list of named passes.

::

    PyTorch nn.Module --torch.onnx.export--> ONNX float --ORT quantize_static (calibration)--> ONNX QDQ
    ONNX (float / QDQ) --frontends.onnx.lower--> ir.Graph   (NHWC, TFLite weight layouts, QDQ nodes)
        IMPORT_PASSES: fuse_activations, fuse_affine, fold_qdq, cancel_qdq, fuse_int_activations,
                       int_boundaries, remove_dead
    int8 TFLite --frontends.tflite.load_tflite--> ir.Graph  (already canonical)
        => the canonical IR: what edgecomp.interp runs, the numerics spec of every backend
    C_PASSES (backends.c): check_c, fold_luts, fuse_residual, requantize, plan_kernels, plan_memory
        => a lowered graph: integer parameters, kernel choices, arena offsets
    emit (backends.c.emit): model.h, model.c, weights.c + the kernel sources the layers use
    backends.cortex_m: firmware shell, linker script, Makefile; build; flash / RAM measured

Every pass takes a graph and returns one; :func:`edgecomp.passes.run_passes` validates the IR
after each and, with ``dump`` (``edgecomp compile --dump-ir DIR``), writes the graph after each
pass to ``DIR/NN_<pass>.txt`` (import passes 00-09, C passes 50-59).
"""
from __future__ import annotations

from pathlib import Path

from . import ir
from .backends.c import C_PASSES
from .frontends.onnx import IMPORT_PASSES
from .passes import dump_graph

__all__ = ["IMPORT_PASSES", "C_PASSES", "import_model", "compile_c", "pass_names"]


def import_model(path: str | Path, name: str | None = None, *, dump: str | Path | None = None) -> ir.Graph:
    """A .onnx (float or QDQ) or .tflite file as the canonical IR."""
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        from .frontends.tflite import load_tflite
        g = load_tflite(path)
        if dump is not None:
            dump_graph(g, Path(dump) / "00_tflite.txt", "tflite (read)")
        return g
    from .frontends.onnx import from_onnx
    return from_onnx(path, name=name, dump=dump)


def compile_c(graph: ir.Graph, target, out_dir: str | Path, options: dict | None = None, *,
              dump: str | Path | None = None, tuning: dict | None = None, force: bool = False,
              extra: dict | None = None) -> dict:
    """The canonical graph through C_PASSES and emission into a built, measured bundle; its manifest
    (``extra``: more manifest entries, e.g. the quantization report; ``force``: see edgecomp.outputs)."""
    from .backends.cortex_m import write_bundle
    return write_bundle(graph, target, out_dir, options, dump_ir=dump, tuning=tuning, force=force, extra=extra)


def pass_names() -> list[str]:
    """Every pass of the pipeline, in order (docs/internals.md lists them; a test keeps both equal)."""
    return [p.name for p in IMPORT_PASSES] + [p.name for p in C_PASSES]
