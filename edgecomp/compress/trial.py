"""One trial of the compression search: build a candidate, export it, score it, measure it.

:func:`run_trial` runs in a worker process (``python -m edgecomp.compress.worker``) or in the
search's own process.  It rebuilds the baseline (:mod:`edgecomp.compress.models`), builds the
candidate (:mod:`edgecomp.compress.candidates`), exports the QDQ ONNX model, scores it on the
*validation* split with ONNX Runtime (the selection number; the test split is never read here),
and measures flash / RAM / instructions by compiling it for the target and running one inference
under QEMU (:func:`measure_on_target`), or estimates them from parameters and MACs (marked
``estimated``) when asked to or when the toolchain is missing.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run_trial", "measure_on_target"]


def measure_on_target(onnx_path: Path, target: str, x_sample: np.ndarray, work: Path, *,
                      precision: str = "int8", measure: str = "auto", fallback=None,
                      weight_plan: dict | None = None) -> dict:
    """flash/RAM/instructions of an ONNX model compiled for ``target``; estimated if that fails.

    ``measure``: "auto" (compile+run, fall back to ``fallback()`` estimates),
    "target" (compile+run, errors propagate), "estimate" (never compile).  ``weight_plan``:
    layers stored packed (:mod:`edgecomp.compress.lowbit`).
    """
    note = ""
    if measure != "estimate":
        try:
            from ..api import run_bundle
            from .compile import compile_onnx
            man = compile_onnx(Path(onnx_path), target, work / "bundle", precision=precision, weight_plan=weight_plan)
            insns = None
            if target != "host":
                pred = run_bundle(work / "bundle", x_sample[:1], emulate=True, progress=False)
                insns = getattr(pred.result, "instructions_per_inference", None)
            return {"flash_bytes": man.get("flash_bytes"), "ram_bytes": man.get("ram_bytes"),
                    "instructions": insns, "params": man.get("params"), "macs": man.get("macs"),
                    "estimated": False, "bundle": str(work / "bundle")}
        except Exception as e:  # a missing backend or tool: estimate instead, and say why
            if measure == "target":
                raise
            note = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    est = fallback() if fallback is not None else {}
    est["estimated"] = True
    if note:
        est["estimate_reason"] = note
    return est


def _estimate(model, ex, bits: int, weight_plan, lowbit) -> dict:
    """estimate_target, less the bytes packed layers save."""
    from .lowbit import layer_bytes
    from .mixed import layer_shapes
    from .report import estimate_target
    est = estimate_target(model, ex, bits)
    if weight_plan:
        shapes = layer_shapes(model)
        for layer, pw in zip(lowbit, weight_plan.values()):
            o, t = shapes[layer]
            cb = len(pw["codebook"]) if pw.get("codebook") else 0
            est["flash_bytes"] -= layer_bytes(o, t, 8) - layer_bytes(o, t, pw["bits"], cb)
    return est


def _load_baseline(job: dict):
    from .models import rebuild
    return rebuild(job["source"])


def run_trial(spec: dict, job: dict) -> dict:
    """Run one candidate end to end; returns its result row (a JSON-able dict).

    ``job``: ``source`` (a :class:`~edgecomp.compress.models.ModelSource` dict), ``data`` (the
    splits .npz), ``dir`` (this trial's folder), ``target``, ``epochs``, ``lr``, ``seed``,
    ``measure``, ``task`` ({kind, metric}), ``round_to``, ``sensitivity`` (a JSON file or None).
    """
    import json

    import torch

    from .candidates import Context, apply, label
    from .qat import export_qdq
    from .report import layer_stats, onnx_predict, totals
    from .task import Splits, make_task
    torch.set_num_threads(1)
    t0 = time.time()
    trial_dir = Path(job["dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    task = make_task(**job.get("task", {}))
    base = _load_baseline(job)
    base.eval()
    sp = Splits.load(Path(job["data"]))
    ex = torch.from_numpy(sp.x_val[:1])
    sens = json.loads(Path(job["sensitivity"]).read_text()) if job.get("sensitivity") else None
    ctx = Context(sp.x_train, sp.y_train, sp.x_val, sp.y_val, ex, int(job["epochs"]), float(job["lr"]),
                  int(job.get("seed", 0)), task, int(job.get("round_to", 1)), sens, job.get("flash_budget"),
                  job.get("fixed_bytes"), job.get("max_drop"))
    built = apply(spec, base, ctx)
    model = built.model.eval()
    torch.save(model, trial_dir / "model.pt")
    from .distill import evaluate
    score_float = evaluate(model, sp.x_val, sp.y_val, task)
    calib = sp.x_train[:200]
    if built.mode == "float32":
        from ..frontends.torch import export_onnx
        onnx_path = export_onnx(model, ex, trial_dir / "model.onnx")
    else:
        onnx_path = export_qdq(model, ex, calib, trial_dir / "model.int8.onnx", keep_float=built.keep_float)
    weight_plan = None
    if built.lowbit:  # int4 / clustered layers: the QDQ weights rewritten on their grid, stored packed
        from .lowbit import rewrite
        from .mixed import onnx_nodes
        nodes = onnx_nodes(onnx_path, built.lowbit)
        weight_plan = rewrite(onnx_path, trial_dir / "model.lowbit.onnx", {nodes[k]: v for k, v in built.lowbit.items()})
        onnx_path = trial_dir / "model.lowbit.onnx"
    out = onnx_predict(onnx_path, sp.x_val)
    bits = 32 if built.mode == "float32" else 8
    st = totals(layer_stats(model, ex, bits))
    meas = measure_on_target(onnx_path, job["target"], sp.x_val, trial_dir,
                             precision="float32" if bits == 32 else "int8", measure=job.get("measure", "auto"),
                             fallback=lambda: _estimate(model, ex, bits, weight_plan, built.lowbit),
                             weight_plan=weight_plan)
    clean = {k: v for k, v in spec.items() if k != "make_student"}
    score = task.score(out, sp.y_val)
    row = {"label": label(clean), "method": spec["method"], "spec": clean, "score": score,
           "tiebreak": task.tiebreak(out, sp.y_val), "score_float": score_float, "params": st["params"],
           "macs": st["macs"], "flash_bytes": meas.get("flash_bytes"), "ram_bytes": meas.get("ram_bytes"),
           "instructions": meas.get("instructions"), "estimated": meas.get("estimated", True),
           "estimate_reason": meas.get("estimate_reason"), "bundle": meas.get("bundle"), "onnx": str(onnx_path),
           "model_pt": str(trial_dir / "model.pt"), "bits": bits, "precision": "float32" if bits == 32 else "int8",
           "float_layers": built.keep_float, "weight_plan": weight_plan, "note": built.note,
           "seconds": round(time.time() - t0, 1)}
    if task.classification:
        row["accuracy"] = score  # the validation accuracy (older scripts read this key)
    return row
