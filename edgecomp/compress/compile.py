"""Compiling a candidate's ONNX model for the target, its low-bit layers packed.

:func:`compile_onnx` is :func:`edgecomp.api.compile_model` for the files a trial writes; with a
weight plan (:func:`edgecomp.compress.lowbit.rewrite`) the planned layers keep their int4 /
clustered weights packed in flash.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["compile_onnx"]


def compile_onnx(onnx_path: Path, target: str, out_dir: Path, *, precision: str = "int8",
                 weight_plan: dict | None = None) -> dict:
    """Compile ``onnx_path`` (float or QDQ) for ``target`` into ``out_dir``; returns the manifest."""
    if weight_plan:
        from .lowbit import compile_lowbit
        return compile_lowbit(Path(onnx_path), target, Path(out_dir), weight_plan)
    from ..api import compile_model
    return compile_model(onnx_path, target, out_dir, precision=precision)
