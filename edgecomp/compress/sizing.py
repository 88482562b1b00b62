"""How much of the network fits a flash budget: found by compiling the narrowed shapes.

A bundle's flash depends on the layers' shapes, not on the trained values: which kernels a layer
takes (and so the code linked), padding of packed weights, per-channel tables.  The plain int8
bundle's bytes per parameter do not carry over to a narrower network (on the MNIST example a
formula from the full model predicted 31 KiB for a network that compiled to 33.7 KiB).  So the
search sizes its structural candidates by compiling an untrained narrowed copy (uniform keep ratio,
:func:`edgecomp.compress.width.narrow`) at a guess and correcting the guess by the secant through
the compiled points, a few compiles, before any training.  With ``bits`` 4 the copies are compiled
with every layer packed at 4 bits (:mod:`edgecomp.compress.lowbit`).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

__all__ = ["size_to_flash"]


def _compile_shape(model, example, calib, target: str, keep: float, round_to: int, bits: int, work: Path) -> tuple[int, int]:
    """(params, flash) of ``model`` narrowed to ``keep`` (untrained values) compiled for ``target``."""
    from .compile import compile_onnx
    from .lowbit import rewrite
    from .mixed import layer_shapes, onnx_nodes
    from .qat import export_qdq
    from .width import narrow, param_count
    m = narrow(model, example, keep, round_to=round_to, init="pruned") if keep < 1.0 else model
    m.eval()
    q = export_qdq(m, example, calib, work / "shape.int8.onnx")
    plan = None
    if bits < 8:
        layers = list(layer_shapes(m))
        nodes = onnx_nodes(q, layers)
        plan = rewrite(q, work / "shape.lowbit.onnx", {nodes[k]: {"bits": bits} for k in layers})
        q = work / "shape.lowbit.onnx"
    man = compile_onnx(q, target, work / "bundle", weight_plan=plan)
    return param_count(m), int(man["flash_bytes"])


def size_to_flash(model, example, calib, target: str, budget: int, *, round_to: int = 1, bits: int = 8,
                  start: tuple[int, int] | None = None, guess: float = 0.3, steps: int = 3, margin: float = 0.985,
                  verbose: bool = False) -> dict:
    """The largest fraction of the parameters (uniform narrowing) whose bundle compiles within
    ``margin * budget``, by secant steps on compiled (params, flash) points; ``start`` a known
    point (e.g. the plain int8 bundle).  Returns {fraction, params, flash, points}."""
    from .width import param_count, uniform_for_params
    total = param_count(model)
    want = budget * margin
    pts: list[tuple[int, int]] = [start] if start else []
    best = None
    frac = guess
    with tempfile.TemporaryDirectory(prefix="edgecomp-size-") as td:
        for i in range(steps):
            frac = min(max(frac, 0.005), 1.0)
            keep, _ = uniform_for_params(model, example, frac, round_to=round_to) if frac < 1.0 else (1.0, total)
            w = Path(td) / f"s{i}"
            w.mkdir()
            p, f = _compile_shape(model, example, calib, target, keep, round_to, bits, w)
            pts.append((p, f))
            if verbose:
                print(f"[compress] sizing ({bits}-bit weights): {p:,} parameters compile to {f:,} B of flash",
                      file=sys.stderr, flush=True)
            if f <= want and (best is None or p > best[1]):
                best = (p / total, p, f)
            if f <= want and f >= want * 0.97:
                break
            (p1, f1), (p0, f0) = pts[-1], (pts[-2] if len(pts) > 1 else (0, f - p * (0.5 if bits < 8 else 1.0)))
            slope = (f1 - f0) / (p1 - p0) if p1 != p0 else (0.5 if bits < 8 else 1.0)
            slope = max(slope, 0.1)
            frac = (p1 + (want - f1) / slope) / total
    if best is None:  # nothing compiled within the budget: the smallest tried, flagged
        p, f = min(pts, key=lambda t: t[1])
        return {"fraction": p / total, "params": p, "flash": f, "points": pts, "fits": False}
    return {"fraction": best[0], "params": best[1], "flash": best[2], "points": pts, "fits": True}
