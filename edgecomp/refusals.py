"""A frontend's refusal of unsupported ops, completed with what the *other* import path takes.

Each frontend refuses every op it lacks at once, before calibration
(:func:`edgecomp.frontends.alternatives.refusal`), knowing only its own registry; the entry points
that read a user's file (``edgecomp compile`` / ``info``, :func:`edgecomp.api.compile_model`) wrap
the load in :func:`both_paths`, which adds, per refused op, the other path's ops of the same
operation from its live registry (or that neither path has it).
"""
from __future__ import annotations

from contextlib import contextmanager

from .errors import UnsupportedError


def explain(e: UnsupportedError) -> UnsupportedError:
    refused = getattr(e, "refused", None)
    if refused is None:
        return e
    from .frontends.alternatives import advice
    fmt, ops, tail = refused
    if fmt == "onnx":
        from .frontends.tflite import TFLITE_OPS
        other = {o.name for o in TFLITE_OPS.values()}
    else:
        from .frontends.onnx.registry import ONNX_OPS
        from .frontends.onnx import lower  # noqa: F401  (its imports fill ONNX_OPS)
        other = set(ONNX_OPS)
    out = UnsupportedError(e.what, where=e.where, fix=advice(ops, fmt, other) + tail)
    out.refused = refused
    return out


@contextmanager
def both_paths():
    """Re-raise an op refusal with the other import path's view of each op."""
    try:
        yield
    except UnsupportedError as e:
        if getattr(e, "refused", None) is None:
            raise
        raise explain(e) from None
