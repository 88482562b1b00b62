"""Compression search: try methods and strengths under flash / RAM / latency / accuracy budgets.

``run_compress`` trains (or takes) a float model, then runs one *trial* per
candidate (PTQ, QAT, structured pruning at several strengths, low-rank, distilled
students, and combinations), each ending in an int8 QDQ ONNX model.  Every trial
is measured: validation accuracy in ONNX Runtime on the int8 model, and flash /
RAM / instructions per inference from the real compiler under QEMU through
``edgecomp.api`` - or, when that cannot run, estimated from params and MACs and
marked ``estimated``.  Results are written trial by trial (``trials.jsonl`` appended
and flushed, ``pareto.md`` / ``pareto.png`` / ``summary.json`` replaced atomically),
so Ctrl-C keeps everything finished so far.  Trials run in a local process pool
(2 workers by default) or on Ray (``executor="ray"``).
"""
from __future__ import annotations

import concurrent.futures as cf
import copy
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from ..bundle import write_manifest
from ..errors import EdgecompError, ModelError, ToolError

#: What `edgecomp compress` writes in its output folder (patterns): never over a file it did not write.
OUTPUT_NAMES = ("trials.jsonl", "pareto.md", "pareto.png", "summary.json", "baseline.pt", "data.npz", "trials",
                "chosen.*", ".*.tmp")

__all__ = ["MnistCNN", "mnist_cnn", "run_compress", "compress_cli", "default_candidates", "pareto_front",
           "run_trial"]


# --------------------------------------------------------------------------- example models
def _mnist_cnn_cls():
    import torch.nn as nn

    class MnistCNN(nn.Module):
        """28x28x1 -> 3 stride-2 conv blocks (c1, c2, c3) -> fc hidden -> fc 10 (~106k params at defaults)."""

        def __init__(self, c1: int = 16, c2: int = 32, c3: int = 64, hidden: int = 80, in_hw: int = 28):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.BatchNorm2d(c1), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU())
            self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.BatchNorm2d(c3), nn.ReLU())
            hw = in_hw
            for _ in range(3):
                hw = (hw + 1) // 2
            self.fc1 = nn.Linear(c3 * hw * hw, hidden)
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(hidden, 10)

        def forward(self, x):
            x = self.conv3(self.conv2(self.conv1(x)))
            return self.fc2(self.relu(self.fc1(x.flatten(1))))

    return MnistCNN


try:  # a module-level class so models pickle across worker processes
    MnistCNN = _mnist_cnn_cls()
    MnistCNN.__module__ = __name__
    MnistCNN.__qualname__ = "MnistCNN"
except ImportError:  # pragma: no cover - torch missing
    MnistCNN = None


def mnist_cnn(width: float = 1.0, hidden: int | None = None, in_hw: int = 28):
    """The example CNN; ``width`` scales the channels (0.5 -> ~1/4 of the parameters)."""
    w = lambda c: max(2, int(round(c * width)))  # noqa: E731
    return MnistCNN(w(16), w(32), w(64), hidden if hidden is not None else w(80), in_hw=in_hw)


def _example(name: str, seed: int):
    from ..datasets import load_digits_split, load_mnist_split
    if name == "mnist":
        return load_mnist_split(seed), (lambda: mnist_cnn()), 12, 3e-3
    if name == "digits":
        return load_digits_split(seed), (lambda: mnist_cnn(0.5, 32, in_hw=8)), 30, 3e-3
    raise ModelError(f"unknown example {name!r}", "compress --example", "Use mnist or digits")


# --------------------------------------------------------------------------- candidates
def default_candidates(quick: bool = False) -> list[dict]:
    """Methods and strengths tried by default (each ends in int8 unless it says fp32)."""
    c = [{"method": "fp32"}, {"method": "ptq"}, {"method": "qat"}] + ([] if quick else [{"method": "mixed"}])
    c += [{"method": "prune", "amount": a} for a in ((0.5, 0.7) if quick else (0.3, 0.5, 0.6, 0.7, 0.8))]
    c += [{"method": "lowrank", "energy": e} for e in ((0.8,) if quick else (0.9, 0.75))]
    c += [{"method": "distill", "width": w} for w in ((0.5,) if quick else (0.5, 0.35))]
    c += [{"method": "prune+qat", "amount": a} for a in ((0.7,) if quick else (0.6, 0.75))]
    return c


def _label(spec: dict) -> str:
    m = spec["method"]
    extra = ",".join(f"{k}={v}" for k, v in spec.items() if k != "method")
    return f"{m}({extra})" if extra else m


# --------------------------------------------------------------------------- one trial
def measure_on_target(onnx_path: Path, target: str, x_sample: np.ndarray, work: Path, *,
                      precision: str = "int8", measure: str = "auto", fallback=None) -> dict:
    """flash/RAM/instructions of an ONNX model compiled for ``target``; estimated if that fails.

    ``measure``: "auto" (compile+run, fall back to ``fallback()`` estimates),
    "target" (compile+run, errors propagate), "estimate" (never compile).
    """
    note = ""
    if measure != "estimate":
        try:
            from ..api import compile_model, run_bundle
            man = compile_model(onnx_path, target, work / "bundle", precision=precision)
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


def _apply(spec: dict, base, data, example_input, epochs: int, lr: float, seed: int):
    """Build the compressed float model for ``spec``; returns (model, quantize_mode)."""
    from .distill import distill, fit
    from .lowrank import factorize
    from .prune import iterative_prune
    from .qat import qat
    xtr, ytr, xva, yva = data
    m = spec["method"]
    ft = max(1, epochs // 3)
    if m in ("fp32", "ptq"):
        return copy.deepcopy(base), ("float32" if m == "fp32" else "ptq")
    if m == "mixed":  # int8 except the layers the sensitivity analysis keeps in float32
        from .mixed import choose_precision, float_layers
        r = choose_precision(base, xtr[:200], xva, yva, max_drop=spec.get("max_drop", 0.3), options=(8, 32))
        return copy.deepcopy(base), ("mixed", float_layers(r))
    if m == "qat":
        return qat(base, xtr, ytr, epochs=max(1, ft), lr=lr / 30, seed=seed, verbose=False), "qat"
    if m in ("prune", "prune+qat"):
        p = iterative_prune(base, xtr, ytr, final_amount=spec["amount"], steps=spec.get("steps", 3),
                            epochs_per_step=max(1, ft // 2), example_input=example_input, lr=lr / 3,
                            saliency=spec.get("saliency", "l1"), seed=seed, verbose=False, teacher=base)
        fit(p, xtr, ytr, epochs=ft, lr=lr / 3, seed=seed, verbose=False, teacher=base)
        if m == "prune+qat":
            return qat(p, xtr, ytr, epochs=max(1, ft), lr=lr / 30, seed=seed, verbose=False), "qat"
        return p, "ptq"
    if m == "lowrank":
        f, _ = factorize(base, energy=spec["energy"])
        fit(f, xtr, ytr, epochs=ft, lr=lr / 3, seed=seed, verbose=False, teacher=base)
        return f, "ptq"
    if m == "distill":
        student = spec["make_student"]() if "make_student" in spec else _scaled_student(base, spec["width"])
        distill(student, base, xtr, ytr, epochs=epochs, lr=lr, seed=seed, temperature=spec.get("temperature", 4.0),
                alpha=spec.get("alpha", 0.7), verbose=False)
        return student, "ptq"
    raise ModelError(f"unknown compression method {m!r}", "compress candidates",
                     "Use fp32, ptq, qat, mixed, prune, prune+qat, lowrank or distill")


def _scaled_student(base, width: float):
    """A student of the same architecture with channels scaled by ``width`` (MnistCNN only)."""
    if MnistCNN is not None and isinstance(base, MnistCNN):
        hw_in = None
        c3 = base.conv3[0].out_channels
        flat = base.fc1.in_features // c3
        hw = int(round(flat ** 0.5))
        hw_in = {4: 28, 1: 8}.get(hw, 28)
        w = lambda c: max(2, int(round(c * width)))  # noqa: E731
        return MnistCNN(w(base.conv1[0].out_channels), w(base.conv2[0].out_channels), w(c3),
                        w(base.fc1.out_features), in_hw=hw_in)
    raise ModelError("distill(width=...) only knows how to shrink the built-in example CNN", "compress candidates",
                     "Give the candidate a 'make_student' callable returning your student model")


def run_trial(spec: dict, base_path: str, data_path: str, trial_dir: str, target: str, epochs: int, lr: float,
              seed: int = 0, measure: str = "auto") -> dict:
    """Run one candidate end to end (in a worker process); returns its result row."""
    import torch

    from .qat import export_qdq
    from .report import estimate_target, layer_stats, totals, onnx_predict
    torch.set_num_threads(1)
    t0 = time.time()
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    base = torch.load(base_path, weights_only=False)
    d = np.load(data_path)
    data = (d["x_train"], d["y_train"], d["x_val"], d["y_val"])
    ex = torch.from_numpy(data[2][:1])
    model, mode = _apply(spec, base, data, ex, epochs, lr, seed)
    keep_float: list[str] = []
    if isinstance(mode, tuple):  # ("mixed", layers kept in float32)
        mode, keep_float = mode
    model.eval()
    torch.save(model, trial_dir / "model.pt")
    from .distill import accuracy
    acc_float = accuracy(model, data[2], data[3])
    calib = data[0][:200]
    if mode == "float32":
        from ..frontends.torch import export_onnx
        onnx_path = export_onnx(model, ex, trial_dir / "model.onnx")
    else:
        onnx_path = export_qdq(model, ex, calib, trial_dir / "model.int8.onnx", keep_float=keep_float)
    acc = float((onnx_predict(onnx_path, data[2]).argmax(1) == data[3]).mean())
    bits = 32 if mode == "float32" else 8
    st = totals(layer_stats(model, ex, bits))
    meas = measure_on_target(onnx_path, target, data[2], trial_dir, precision="float32" if bits == 32 else "int8",
                             measure=measure, fallback=lambda: estimate_target(model, ex, bits))
    return {"label": _label({k: v for k, v in spec.items() if k != "make_student"}),
            "method": spec["method"], "spec": {k: v for k, v in spec.items() if k != "make_student"},
            "accuracy": acc, "accuracy_float": acc_float, "params": st["params"], "macs": st["macs"],
            "flash_bytes": meas.get("flash_bytes"), "ram_bytes": meas.get("ram_bytes"),
            "instructions": meas.get("instructions"), "estimated": meas.get("estimated", True),
            "estimate_reason": meas.get("estimate_reason"), "onnx": str(onnx_path),
            "model_pt": str(trial_dir / "model.pt"), "bits": bits, "float_layers": keep_float,
            "seconds": round(time.time() - t0, 1)}


# --------------------------------------------------------------------------- selection
def _metrics(r: dict) -> tuple:
    big = float("inf")
    return (-r["accuracy"], r.get("flash_bytes") or big, r.get("ram_bytes") or big, r.get("instructions") or big)


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows not dominated on (accuracy up; flash, RAM, instructions down)."""
    front = []
    for r in rows:
        a = _metrics(r)
        dominated = any(all(x <= y for x, y in zip(_metrics(o), a)) and _metrics(o) != a for o in rows if o is not r)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r.get("flash_bytes") or 0))


def _violations(r: dict, budgets: dict, base_acc: float) -> dict:
    v = {}
    for key, col in (("flash", "flash_bytes"), ("ram", "ram_bytes"), ("latency", "instructions")):
        lim = budgets.get(key)
        if lim is not None and r.get(col) is not None and r[col] > lim:
            v[key] = r[col] / lim - 1.0
    drop = (base_acc - r["accuracy"]) * 100
    if budgets.get("max_accuracy_drop") is not None and drop > budgets["max_accuracy_drop"] + 1e-9:
        v["accuracy"] = (drop - budgets["max_accuracy_drop"]) / max(budgets["max_accuracy_drop"], 0.1)
    return v


def select(rows: list[dict], budgets: dict, base_acc: float) -> dict:
    """The chosen candidate, or the closest one with the budgets it misses."""
    fits = [r for r in rows if not _violations(r, budgets, base_acc)]
    if fits:
        best = max(fits, key=lambda r: (r["accuracy"], -(r.get("flash_bytes") or 0)))
        return {"fits": True, "chosen": best, "failing": {}}
    if not rows:
        return {"fits": False, "chosen": None, "failing": {}}
    closest = min(rows, key=lambda r: sum(_violations(r, budgets, base_acc).values()))
    failing = {}
    for key in ("flash", "ram", "latency", "accuracy"):
        if all(key in _violations(r, budgets, base_acc) for r in rows):
            failing[key] = "no candidate meets it"
    return {"fits": False, "chosen": closest, "failing": failing,
            "closest_misses": _violations(closest, budgets, base_acc)}


def _fmt_b(n) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f} KiB"


def results_markdown(rows: list[dict], budgets: dict, base_acc: float, target: str) -> str:
    front = {id(r) for r in pareto_front(rows)}
    sel = select(rows, budgets, base_acc)
    est = any(r.get("estimated") for r in rows)
    lines = [f"# Compression search ({target})", "",
             f"Baseline fp32 accuracy {base_acc * 100:.2f} %. Budgets: " + ", ".join(
                 f"{k} {v if k != 'flash' and k != 'ram' else _fmt_b(v)}" for k, v in budgets.items() if v is not None),
             "", "| candidate | accuracy (int8, ORT) | drop (pts) | params | flash | RAM | instructions | Pareto | fits |",
             "|---|---:|---:|---:|---:|---:|---:|:-:|:-:|"]
    for r in sorted(rows, key=lambda r: (r.get("flash_bytes") or 0)):
        mark = "*" if r.get("estimated") else ""
        v = _violations(r, budgets, base_acc)
        lines.append(f"| {r['label']} | {r['accuracy'] * 100:.2f} % | {(base_acc - r['accuracy']) * 100:+.2f} | "
                     f"{r['params']:,} | {_fmt_b(r.get('flash_bytes'))}{mark} | {_fmt_b(r.get('ram_bytes'))}{mark} | "
                     f"{r['instructions'] if r.get('instructions') is not None else 'n/a'}{mark} | "
                     f"{'yes' if id(r) in front else ''} | {'yes' if not v else 'no: ' + ', '.join(v)} |")
    lines.append("")
    if est:
        why = next((r.get("estimate_reason") for r in rows if r.get("estimate_reason")), None)
        lines.append("`*` estimated from params and MACs, not measured on the target ("
                     + (f"the compiler/QEMU run failed: {why}" if why else "estimates requested") + ").")
    if sel["fits"]:
        c = sel["chosen"]
        lines.append(f"**Chosen:** {c['label']}: {c['accuracy'] * 100:.2f} % "
                     f"({(base_acc - c['accuracy']) * 100:+.2f} pts), flash {_fmt_b(c.get('flash_bytes'))}, "
                     f"RAM {_fmt_b(c.get('ram_bytes'))}, instructions {c.get('instructions')}.")
    elif sel["chosen"] is not None:
        c = sel["chosen"]
        lines.append("**No candidate meets every budget.** " + (
            "Budgets no candidate meets: " + ", ".join(sel["failing"]) + ". " if sel["failing"] else "") +
            f"Closest: {c['label']} (misses " + ", ".join(
                f"{k} by {v * 100:.0f} %" for k, v in sel["closest_misses"].items()) + ").")
    lines.append("")
    lines.append("Unstructured sparsity is not among the candidates: the C backend stores dense weights, "
                 "so zeroed weights do not shrink flash.")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, data: str | bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _plot(rows: list[dict], base_acc: float, budgets: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    front = {id(r) for r in pareto_front(rows)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        x = (r.get("flash_bytes") or 0) / 1024
        ax.scatter(x, r["accuracy"] * 100, c="tab:red" if id(r) in front else "tab:gray",
                   marker="o" if not r.get("estimated") else "x")
        ax.annotate(r["label"], (x, r["accuracy"] * 100), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if budgets.get("flash"):
        ax.axvline(budgets["flash"] / 1024, ls="--", c="tab:blue", label="flash budget")
    if budgets.get("max_accuracy_drop") is not None:
        ax.axhline(base_acc * 100 - budgets["max_accuracy_drop"], ls=":", c="tab:green", label="accuracy floor")
    ax.set_xscale("log")
    ax.set_xlabel("flash (KiB, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("compression candidates (red: Pareto set, x: estimated)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _write_outputs(out: Path, rows: list[dict], budgets: dict, base_acc: float, target: str) -> dict:
    _atomic_write(out / "pareto.md", results_markdown(rows, budgets, base_acc, target))
    sel = select(rows, budgets, base_acc)
    summary = {"target": target, "budgets": budgets, "baseline_accuracy": base_acc, "trials": len(rows),
               "fits": sel["fits"], "chosen": sel["chosen"]["label"] if sel["chosen"] else None,
               "failing_budgets": sel.get("failing", {}), "pareto": [r["label"] for r in pareto_front(rows)]}
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if rows:
        try:
            _plot(rows, base_acc, budgets, out / "pareto.png")
        except Exception as e:  # a plot must never lose the results
            print(f"  (plot skipped: {e})", file=sys.stderr)
    if sel["chosen"] is not None and sel["fits"]:
        c = sel["chosen"]
        for src, name in ((c["onnx"], "chosen" + "".join(Path(c["onnx"]).suffixes)), (c["model_pt"], "chosen.pt")):
            tmp = out / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, out / name)
    return summary


def _worker_init():
    import torch
    torch.set_num_threads(1)


# --------------------------------------------------------------------------- entry point
def run_compress(model=None, data=None, *, example: str = "mnist", target: str = "cortex-m4",
                 out_dir: str | Path = "compress-out", flash: int | None = None, ram: int | None = None,
                 latency: float | None = None, max_accuracy_drop: float | None = 1.0, executor: str = "local",
                 workers: int = 2, quick: bool = False, seed: int = 0, candidates: list[dict] | None = None,
                 epochs: int | None = None, lr: float | None = None, measure: str = "auto",
                 verbose: bool = True, force: bool = False) -> dict:
    """Search compression candidates for ``model`` on ``data`` = (x_train, y_train, x_val, y_val).

    Without ``model``/``data`` the built-in ``example`` ("mnist" or "digits") is
    trained first.  Writes into ``out_dir``: ``trials.jsonl``, ``pareto.md``,
    ``pareto.png``, ``summary.json``, ``chosen.int8.onnx`` + ``chosen.pt`` (when a
    candidate fits) and one folder per trial.  Returns the summary dict.
    """
    import torch

    from .distill import accuracy, fit
    if executor not in ("local", "ray", "inline"):
        raise ModelError(f"unknown executor {executor!r}", "compress --executor", "Use local or ray")
    if workers < 1:
        raise ModelError(f"workers must be >= 1, got {workers}", "compress --workers", "Use e.g. 2")
    for name, v in (("flash", flash), ("ram", ram), ("latency", latency)):
        if v is not None and v <= 0:
            raise ModelError(f"the {name} budget must be positive, got {v}", f"compress --{name}",
                             "Give e.g. --flash 32KiB --ram 8KiB")
    from ..outputs import check_output_dir, prepare_in_place
    from ..targets import load_target
    load_target(target)  # an unknown target is found now, not after the training
    if data is None and example not in ("mnist", "digits"):
        raise ModelError(f"unknown example {example!r}", "compress --example", "Use mnist or digits")
    plan = check_output_dir(out_dir, force=force)  # before any training
    out = plan.dest
    foreign = prepare_in_place(plan, OUTPUT_NAMES)
    write_manifest(out, {"kind": "compress", "complete": False}, skip=foreign)
    budgets = {"flash": flash, "ram": ram, "latency": latency, "max_accuracy_drop": max_accuracy_drop}
    ex_epochs, ex_lr = 12, 3e-3
    if data is None:
        data, make, ex_epochs, ex_lr = _example(example, seed)
        if model is None:
            torch.manual_seed(seed)
            model = make()
    elif model is None:
        raise ModelError("data given without a model", "run_compress", "Pass model=<nn.Module> too")
    if len(data) != 4:
        raise ModelError("data must be (x_train, y_train, x_val, y_val)", "run_compress", "Pass four arrays")
    epochs = epochs if epochs is not None else (max(3, ex_epochs // 2) if quick else ex_epochs)
    lr = lr if lr is not None else ex_lr
    xtr, ytr, xva, yva = [np.asarray(a) for a in data]
    if len(xtr) != len(ytr) or len(xva) != len(yva) or len(xtr) == 0 or len(xva) == 0:
        raise ModelError(f"data has {len(xtr)} train samples / {len(ytr)} labels and {len(xva)} validation "
                         f"samples / {len(yva)} labels", "run_compress", "Give one label per sample, none empty")
    xtr, xva = xtr.astype(np.float32), xva.astype(np.float32)
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(xva[:1]))
    except Exception as e:
        raise ModelError(f"the model cannot run on the data: {str(e).splitlines()[0]}", "run_compress",
                         f"Give samples shaped like the model's input (got {tuple(xva.shape[1:])} per sample)") from None
    torch.manual_seed(seed)
    if _needs_training(model, xva, yva):
        if verbose:
            print(f"[compress] training the float baseline ({epochs} epochs)", file=sys.stderr)
        fit(model, xtr, ytr, epochs=epochs, lr=lr, seed=seed, verbose=verbose, label="baseline")
    model.eval()
    base_acc = accuracy(model, xva, yva)
    if verbose:
        print(f"[compress] baseline fp32 val accuracy {base_acc * 100:.2f} %", file=sys.stderr)
    base_path, data_path = out / "baseline.pt", out / "data.npz"
    torch.save(model, base_path)
    np.savez(data_path, x_train=xtr, y_train=ytr, x_val=xva, y_val=yva)
    cands = candidates if candidates is not None else default_candidates(quick)
    rows: list[dict] = []
    jsonl = out / "trials.jsonl"
    jsonl.write_text("")

    def record(row):
        rows.append(row)
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _write_outputs(out, rows, budgets, base_acc, target)
        write_manifest(out, {"kind": "compress", "complete": False}, skip=foreign)
        if verbose:
            est = " (estimated)" if row.get("estimated") else ""
            print(f"[compress] {len(rows)}/{len(cands)} {row['label']}: acc {row['accuracy'] * 100:.2f} %, "
                  f"flash {_fmt_b(row.get('flash_bytes'))}, RAM {_fmt_b(row.get('ram_bytes'))}, "
                  f"instructions {row.get('instructions')}{est}", file=sys.stderr, flush=True)

    args = [(spec, str(base_path), str(data_path), str(out / "trials" / f"{i:02d}"), target, epochs, lr, seed, measure)
            for i, spec in enumerate(cands)]
    try:
        if executor == "inline" or (executor == "local" and workers == 1):
            for a in args:
                _safe(record, a)
        elif executor == "local":
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=_worker_init) as pool:
                futs = {pool.submit(run_trial, *a): a for a in args}
                try:
                    for f in cf.as_completed(futs):
                        _collect(record, f, futs[f])
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        else:
            _run_ray(args, record, workers)
    except KeyboardInterrupt:
        print(f"\n[compress] interrupted: {len(rows)} finished trials kept in {out}", file=sys.stderr)
        raise
    summary = _write_outputs(out, rows, budgets, base_acc, target)
    write_manifest(out, {"kind": "compress", "complete": True}, skip=foreign)
    if verbose:
        print((out / "pareto.md").read_text())
    return summary


def _needs_training(model, x, y) -> bool:
    """Train only an untrained model (chance-level accuracy)."""
    from .distill import accuracy
    return accuracy(model, x[:200], y[:200]) < 0.3


def _safe(record, a):
    try:
        record(run_trial(*a))
    except EdgecompError as e:
        print(f"[compress] {_label(a[0])} failed: {e}", file=sys.stderr)


def _collect(record, fut, a):
    try:
        record(fut.result())
    except EdgecompError as e:
        print(f"[compress] {_label(a[0])} failed: {e}", file=sys.stderr)
    except Exception as e:  # a crashing trial must not lose the others
        print(f"[compress] {_label(a[0])} crashed: {type(e).__name__}: {e}", file=sys.stderr)
        if os.environ.get("EDGECOMP_DEBUG"):
            traceback.print_exc()


def _run_ray(args, record, workers):
    try:
        import ray
    except ImportError:
        raise ToolError("the ray executor needs the 'ray' package", "compress --executor ray",
                        "pip install ray, or use --executor local") from None
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_trial)
        refs = {remote.remote(*a): a for a in args}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                record(ray.get(done[0]))
            except Exception as e:
                print(f"[compress] {_label(refs[done[0]][0])} failed: {e}", file=sys.stderr)
    finally:
        if started:
            ray.shutdown()


def compress_cli(a) -> int:
    """`edgecomp compress` (arguments: see cli.build_parser)."""
    summary = run_compress(example=a.example, target=a.target, out_dir=a.output, flash=a.flash, ram=a.ram,
                           latency=a.latency, max_accuracy_drop=a.max_accuracy_drop, executor=a.executor,
                           workers=a.workers, quick=a.quick, seed=getattr(a, "seed", 0),
                           measure="estimate" if getattr(a, "estimate", False) else getattr(a, "measure", "auto"),
                           force=getattr(a, "force", False))
    if not summary["fits"]:
        failing = ", ".join(summary["failing_budgets"]) or "the combination of budgets"
        print(f"edgecomp compress: no candidate meets every budget ({failing}); closest: {summary['chosen']}. "
              f"See {Path(a.output) / 'pareto.md'}", file=sys.stderr)
        return 3
    print(f"chosen: {summary['chosen']} -> {Path(a.output) / 'chosen.int8.onnx'}")
    return 0
