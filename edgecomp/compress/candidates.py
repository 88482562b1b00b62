"""The candidates a compression search tries, and how each one is built from the baseline.

A candidate is a dict: ``{"method": ..., <strength>}``.  Methods (each ends in int8 unless noted):

=============  ==================================================================================
fp32           the baseline, float32 (the reference)
ptq            post-training int8 (ONNX Runtime calibration)
qat            fake-quantized fine-tuning, then int8
mixed          per-layer precision chosen by sensitivity (see :mod:`edgecomp.compress.mixed`)
prune          structured channel pruning, iterative, fine-tuned with the baseline as teacher;
               ``amount`` (channels removed per group) or ``params`` (fraction of parameters kept)
prune+qat      the same, then QAT
width          a narrower copy of the user's network (one keep ratio for every channel group,
               sized to ``params``), ``init`` "scratch" (re-initialised) or "pruned" (most salient
               channels kept), trained by distillation from the baseline
global         non-uniform per-group ratios chosen from the pruning sensitivity to meet ``params``,
               pruned then distilled
distill        ``width`` given as a keep ratio (re-initialised, distilled): kept for old scripts
lowrank        truncated SVD of conv / linear layers at ``energy``, fine-tuned
=============  ==================================================================================

:func:`default_candidates` sizes the structural candidates from the flash budget when there is one
(the plain int8 bundle's bytes tell how much of the network fits), else tries a fixed grid.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..errors import ModelError

__all__ = ["default_candidates", "sized_candidates", "label", "apply", "Built", "METHODS", "STAGES"]

METHODS = ("fp32", "ptq", "qat", "mixed", "int4", "cluster", "prune", "prune+qat", "width", "global", "distill",
           "lowrank")
#: What ``"then"`` may add after a structural method: the low-bit stages.
STAGES = ("mixed", "int4", "cluster")


def label(spec: dict) -> str:
    m = spec["method"]
    extra = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("method", "make_student"))
    return f"{m}({extra})" if extra else m


def default_candidates(quick: bool = False) -> list[dict]:
    """A fixed grid (no flash budget to size against)."""
    c = [{"method": "fp32"}, {"method": "ptq"}, {"method": "qat"}] + ([] if quick else [{"method": "mixed"}])
    c += [{"method": "prune", "amount": a} for a in ((0.5, 0.7) if quick else (0.3, 0.5, 0.7, 0.8))]
    c += [{"method": "lowrank", "energy": e} for e in ((0.8,) if quick else (0.9, 0.75))]
    c += [{"method": "width", "params": f, "init": "scratch"} for f in ((0.25,) if quick else (0.25, 0.1))]
    c += [{"method": "global", "params": f} for f in ((0.25,) if quick else (0.25, 0.1))]
    c += [{"method": "prune+qat", "amount": a} for a in ((0.7,) if quick else (0.6,))]
    return c


def params_fraction(flash_budget: int, int8_flash: int, params: int, margin: float = 0.97) -> float:
    """A first guess of the fraction of the parameters an int8 bundle keeps within ``flash_budget``
    (about one byte a parameter plus a fixed part); :mod:`edgecomp.compress.sizing` refines it by
    compiling."""
    fixed = max(int8_flash - params, 0)
    return (flash_budget * margin - fixed) / max(params, 1)


def sized_candidates(f8: float, f4: float | None = None, quick: bool = False) -> list[dict]:
    """Candidates sized to a flash budget: ``f8`` the fraction of the parameters a uniformly
    narrowed int8 network keeps within it, ``f4`` the same with every weight in 4 bits."""
    if f8 >= 0.95 or f8 <= 0.003:  # everything fits as int8, or nothing can: a fixed grid shows the trade-off
        return [c for c in default_candidates(quick) if c["method"] != "ptq"]
    f8 = round(f8, 3)
    c = [{"method": "fp32"}]
    c += [{"method": "width", "params": f8, "init": "scratch"}, {"method": "global", "params": f8}]
    if f4 is not None and f4 < 0.95:
        f4 = round(f4, 3)
        c += [{"method": "width", "params": f4, "init": "scratch", "then": "int4"}]
        if not quick:
            c += [{"method": "width", "params": f4, "init": "scratch", "then": "mixed"},
                  {"method": "global", "params": f4, "then": "int4"}]
    if not quick:
        c += [{"method": "width", "params": f8, "init": "pruned"}, {"method": "prune", "params": f8},
              {"method": "width", "params": round(0.7 * f8, 3), "init": "scratch"},
              {"method": "mixed"}, {"method": "cluster", "k": 16}, {"method": "lowrank", "energy": 0.75}]
    return c


@dataclass
class Context:
    """What building a candidate needs besides the baseline (see :mod:`edgecomp.compress.trial`)."""
    x_train: object
    y_train: object
    x_val: object
    y_val: object
    example: object  # one input sample (torch tensor, batch 1)
    epochs: int
    lr: float
    seed: int
    task: object
    round_to: int = 1
    sensitivity: dict | None = None
    flash_budget: int | None = None  # bytes, for mixed precision's choice
    fixed: int | None = None  # flash of the plain int8 bundle that is not layer constants (mixed.fixed_bytes)
    max_drop: float | None = None  # the search's budget in the task's unit


@dataclass
class Built:
    model: object
    mode: str  # "float32" | "ptq" | "qat"
    keep_float: list[str] = field(default_factory=list)
    note: str = ""
    lowbit: dict = field(default_factory=dict)  # {module: {"bits": b} | {"clusters": k}} stored packed


def _fit(model, ctx: Context, epochs: int, lr: float, teacher):
    from .distill import fit
    return fit(model, ctx.x_train, ctx.y_train, epochs=epochs, lr=lr, seed=ctx.seed, verbose=False, teacher=teacher,
               task=ctx.task)


def _keep_for(spec: dict, base, ctx: Context) -> tuple[float, str]:
    """(uniform keep ratio, note) for a width spec."""
    from .width import uniform_for_params
    if "params" in spec:
        r, p = uniform_for_params(base, ctx.example, float(spec["params"]), round_to=ctx.round_to)
        return r, f"keep ratio {r:.3f} in every channel group"
    if "width" in spec:
        return float(spec["width"]), f"keep ratio {float(spec['width']):.3f}"
    raise ModelError(f"{label(spec)} needs params= or width=", "compress candidates", "Give e.g. params=0.2")


def _amount_for(spec: dict, base, ctx: Context) -> float:
    if "amount" in spec:
        return float(spec["amount"])
    if "params" in spec:
        r, _ = _keep_for(spec, base, ctx)
        return 1.0 - r
    raise ModelError(f"{label(spec)} needs amount= or params=", "compress candidates", "Give e.g. amount=0.5")


def apply(spec: dict, base, ctx: Context) -> Built:
    """Build the compressed float model for ``spec`` from ``base`` (never modified); ``spec["then"]``
    (one of :data:`STAGES`, e.g. ``{"method": "width", "params": 0.3, "then": "int4"}``) adds a low-bit
    stage on the result."""
    then = spec.get("then")
    if then is not None:
        if then not in STAGES:
            raise ModelError(f"unknown stage then={then!r}", "compress candidates", f"Use one of {', '.join(STAGES)}")
        first = _apply({k: v for k, v in spec.items() if k != "then"}, base, ctx)
        if first.mode != "ptq" or first.keep_float or first.lowbit:
            raise ModelError(f"then={then} needs an int8 result first, {label(spec)} is {first.mode}",
                             "compress candidates", "Put the low-bit stage after a structural method")
        out = lowbit_stage(then, spec, first.model, ctx, teacher=base)
        out.note = f"{first.note}; {out.note}" if first.note else out.note
        return out
    return _apply(spec, base, ctx)


def lowbit_stage(stage: str, spec: dict, model, ctx: Context, teacher) -> Built:
    """Mixed precision under the flash budget, int4 everywhere, or weight clustering, on ``model``."""
    from .mixed import choose_precision, finetune_bits, float_layers, layer_shapes, lowbit_layers
    ft = max(1, ctx.epochs // 3)
    if stage == "cluster":
        from .lowbit import layer_bytes
        k = int(spec.get("k", 16))
        layers = {n: {"clusters": k} for n, (o, t) in layer_shapes(model).items()
                  if layer_bytes(o, t, 8, k) < layer_bytes(o, t, 8)}  # where indices + codebook are smaller
        return Built(model, "ptq", lowbit=layers, note=f"{k} clusters in {len(layers)} layers (k-means, int8 values)")
    if stage == "int4":
        bits = {n: int(spec.get("bits", 4)) for n in layer_shapes(model)}
        tuned = finetune_bits(model, bits, ctx.x_train, ctx.y_train, epochs=ft, lr=ctx.lr / 10, teacher=teacher,
                              task=ctx.task, seed=ctx.seed)
        return Built(tuned, "ptq", lowbit=lowbit_layers({"bits": bits}),
                     note=f"every layer int{int(spec.get('bits', 4))}, fake-quantized fine-tune distilled from the "
                     "baseline")
    budget = spec.get("max_drop", 0.5 * ctx.max_drop if ctx.max_drop is not None else 0.5)
    r = choose_precision(model, ctx.x_train[:200], ctx.x_val, ctx.y_val, max_drop=budget,
                         options=tuple(spec.get("options", (4, 8, 32))), task=ctx.task,
                         flash_budget=ctx.flash_budget, fixed=ctx.fixed)
    keep, low = float_layers(r), lowbit_layers(r)
    tuned = finetune_bits(model, r["bits"], ctx.x_train, ctx.y_train, epochs=ft, lr=ctx.lr / 10, teacher=teacher,
                          task=ctx.task, seed=ctx.seed) if low else model
    counts = {}
    for b in r["bits"].values():
        counts[b] = counts.get(b, 0) + 1
    note = ", ".join(f"{c} x {'float32' if b > 8 else f'int{b}'}" for b, c in sorted(counts.items()))
    if r.get("predicted_flash"):
        note += f", predicted flash {r['predicted_flash']:,} B"
    return Built(tuned, "ptq", keep, note, lowbit=low)


def _apply(spec: dict, base, ctx: Context) -> Built:
    from .distill import distill
    from .lowrank import factorize
    from .prune import iterative_prune
    from .qat import qat
    from .width import global_amounts, narrow
    m = spec["method"]
    epochs, lr = ctx.epochs, ctx.lr
    ft = max(1, epochs // 3)
    if m in ("fp32", "ptq"):
        return Built(copy.deepcopy(base), "float32" if m == "fp32" else "ptq")
    if m in STAGES:
        return lowbit_stage(m, spec, copy.deepcopy(base), ctx, teacher=base)
    if m == "qat":
        return Built(qat(base, ctx.x_train, ctx.y_train, epochs=ft, lr=lr / 30, seed=ctx.seed, verbose=False,
                         task=ctx.task), "qat")
    if m in ("prune", "prune+qat"):
        amount = _amount_for(spec, base, ctx)
        p = iterative_prune(base, ctx.x_train, ctx.y_train, final_amount=amount, steps=spec.get("steps", 3),
                            epochs_per_step=max(1, ft // 2), example_input=ctx.example, lr=lr / 3,
                            saliency=spec.get("saliency", "l1"), seed=ctx.seed, verbose=False, teacher=base,
                            round_to=ctx.round_to, task=ctx.task)
        _fit(p, ctx, ft, lr / 3, base)
        note = f"{amount:.0%} of each group's channels removed in {spec.get('steps', 3)} steps"
        if m == "prune+qat":
            return Built(qat(p, ctx.x_train, ctx.y_train, epochs=ft, lr=lr / 30, seed=ctx.seed, verbose=False,
                             task=ctx.task), "qat", note=note)
        return Built(p, "ptq", note=note)
    if m == "lowrank":
        f, ranks = factorize(base, energy=spec["energy"])
        _fit(f, ctx, ft, lr / 3, base)
        return Built(f, "ptq", note=", ".join(f"{k} r={r}/{n}" for k, (r, n) in ranks.items()))
    if m in ("width", "distill"):
        if "make_student" in spec:
            student, note = spec["make_student"](), "student from make_student()"
        else:
            keep, note = _keep_for(spec, base, ctx)
            init = spec.get("init", "scratch")
            student = narrow(base, ctx.example, keep, round_to=ctx.round_to, init=init, seed=ctx.seed + 1)
            note += f", {'re-initialised' if init == 'scratch' else 'most salient channels kept'}"
        distill(student, base, ctx.x_train, ctx.y_train, epochs=epochs, lr=lr if spec.get("init", "scratch") ==
                "scratch" else lr / 3, seed=ctx.seed, temperature=spec.get("temperature", 4.0),
                alpha=spec.get("alpha", 0.7), verbose=False, task=ctx.task)
        return Built(student, "ptq", note=note + ", distilled from the baseline")
    if m == "global":
        if ctx.sensitivity is None:
            raise ModelError("global ratios need the pruning sensitivity", "compress candidates",
                             "Run the search through run_compress (it measures the sensitivity first)")
        amounts = global_amounts(base, ctx.example, ctx.sensitivity, float(spec["params"]), round_to=ctx.round_to)
        student = narrow(base, ctx.example, {k: 1.0 - a for k, a in amounts.items()}, round_to=ctx.round_to)
        distill(student, base, ctx.x_train, ctx.y_train, epochs=epochs, lr=lr / 3, seed=ctx.seed,
                temperature=spec.get("temperature", 4.0), alpha=spec.get("alpha", 0.7), verbose=False, task=ctx.task)
        return Built(student, "ptq", note="pruned " + ", ".join(f"{k} {a:.0%}" for k, a in amounts.items())
                     + ", distilled from the baseline")
    raise ModelError(f"unknown compression method {m!r}", "compress candidates", "Use one of: " + ", ".join(METHODS))
