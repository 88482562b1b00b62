"""Compression search: try methods and strengths under flash / RAM / latency / accuracy budgets.

``run_compress`` takes the user's model and data (or trains a built-in example), measures the
per-layer pruning sensitivity, then runs one *trial* per candidate
(:mod:`~edgecomp.compress.candidates`: PTQ, QAT, mixed precision, structured pruning, narrower
networks distilled from the original, low-rank, ...), each ending in an int8 QDQ ONNX model
scored on the validation split and measured on the target (:mod:`~edgecomp.compress.trial`).
Then it compiles the finalists, chooses the best that really fits, writes its bundle and runs the
test split through it (:mod:`~edgecomp.compress.finalize`).  Results are written trial by trial
(``trials.jsonl`` appended and flushed, ``pareto.md`` / ``pareto.png`` / ``summary.json``
replaced atomically), so Ctrl-C keeps everything finished so far.  Trials run in worker
processes (:mod:`~edgecomp.compress.executor`), in this process, or on Ray.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..bundle import write_manifest
from ..errors import ModelError, ToolError
from .candidates import default_candidates, sized_candidates
from .executor import Progress, fmt_seconds, run_trials
from .models import MnistCNN, ModelSource, load_user_model, mnist_cnn, portable
from .selection import fmt_bytes, pareto_front, plot_pareto, results_markdown, select
from .task import Splits, make_splits, make_task
from .trial import measure_on_target, run_trial

#: What `edgecomp compress` writes in its output folder (patterns): never over a file it did not write.
OUTPUT_NAMES = ("trials.jsonl", "pareto.md", "pareto.png", "summary.json", "baseline.pt", "data.npz", "trials",
                "chosen.*", "sensitivity.*", "bundle", ".*.tmp", ".bundle*")

__all__ = ["MnistCNN", "mnist_cnn", "run_compress", "compress_cli", "default_candidates", "pareto_front",
           "run_trial", "measure_on_target", "select", "results_markdown"]


def _example(name: str, seed: int):
    """(splits, make model, epochs, lr) of a built-in example; validation split off the training data."""
    from ..datasets import load_digits_split, load_mnist_split
    if name == "mnist":
        xtr, ytr, xte, yte = load_mnist_split(seed)
        return make_splits((xtr, ytr), None, (xte, yte), task=make_task(), seed=seed, fraction=0.2), \
            (lambda: mnist_cnn()), 12, 3e-3
    if name == "digits":
        xtr, ytr, xte, yte = load_digits_split(seed)
        return make_splits((xtr, ytr), None, (xte, yte), task=make_task(), seed=seed, fraction=0.2), \
            (lambda: mnist_cnn(0.5, 32, in_hw=8)), 30, 3e-3
    raise ModelError(f"unknown example {name!r}", "compress --example", "Use mnist or digits")


def _atomic_write(path: Path, data: str | bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _splits_from(data, task, seed) -> Splits:
    """``data``: (x_train, y_train, x_val, y_val[, x_test, y_test]) arrays, or a dict with "train",
    "val", "test" entries (each (x, y) arrays, an .npz path or a DataLoader)."""
    if isinstance(data, Splits):
        return data
    if isinstance(data, dict):
        if "train" not in data:
            raise ModelError("the data dict has no 'train' entry", "run_compress",
                             "Pass {'train': (x, y), 'val': (x, y), 'test': (x, y)}")
        return make_splits(data["train"], data.get("val"), data.get("test"), task=task, seed=seed)
    if isinstance(data, (tuple, list)) and len(data) in (4, 6):
        parts = [np.asarray(a) for a in data]
        for i in range(0, len(parts), 2):
            if len(parts[i]) != len(parts[i + 1]) or len(parts[i]) == 0:
                raise ModelError(f"data has {len(parts[i])} samples but {len(parts[i + 1])} labels in split {i // 2}",
                                 "run_compress", "Give one label per sample, none empty")
        test = (parts[4], parts[5]) if len(parts) == 6 else None
        return make_splits((parts[0], parts[1]), (parts[2], parts[3]), test, task=task, seed=seed)
    raise ModelError("data must be (x_train, y_train, x_val, y_val[, x_test, y_test]) or a dict of splits",
                     "run_compress", "Pass arrays, .npz paths or DataLoaders")


def _describe(task):
    def f(row: dict) -> str:
        est = " (estimated)" if row.get("estimated") else ""
        return (f"{row['label']}: val {task.score_name} {task.fmt(row['score'])}, flash {fmt_bytes(row.get('flash_bytes'))}, "
                f"RAM {fmt_bytes(row.get('ram_bytes'))}, instructions {row.get('instructions')}{est}, "
                f"{row.get('seconds', 0):.0f} s")
    return f


def run_compress(model=None, data=None, *, example: str = "mnist", target: str = "cortex-m4",
                 out_dir: str | Path = "compress-out", flash: int | None = None, ram: int | None = None,
                 latency: float | None = None, max_accuracy_drop: float | None = 1.0,
                 max_error_increase: float | None = None, task: str = "classification", metric: str | None = None,
                 executor: str = "local", workers: int = 2, quick: bool = False, seed: int = 0,
                 candidates: list[dict] | None = None, epochs: int | None = None, lr: float | None = None,
                 measure: str = "auto", verbose: bool = True, finalists: int = 3, firmware_test: bool = True,
                 source: ModelSource | None = None, force: bool = False) -> dict:
    """Search compression candidates for ``model`` on ``data`` under the budgets; write the chosen bundle.

    ``data``: (x_train, y_train, x_val, y_val[, x_test, y_test]) arrays, or {"train", "val", "test"}
    each (x, y), an .npz path or a DataLoader (missing splits are carved out and the report says so).
    Without ``model``/``data`` the built-in ``example`` ("mnist" or "digits") is trained first.
    ``task``/``metric``: "classification" (accuracy; budget ``max_accuracy_drop`` in points) or
    "regression" ("rmse" or "mae"; budget ``max_error_increase`` in percent of the baseline error).
    Writes into ``out_dir``: ``trials.jsonl``, ``pareto.md``, ``pareto.png``, ``summary.json``,
    ``sensitivity.md`` / ``.png``, ``bundle/`` (the chosen candidate compiled for ``target``),
    ``chosen.int8.onnx`` + ``chosen.pt``, and one folder per trial.  Returns the summary dict; raises
    :class:`~edgecomp.errors.ToolError` when no trial finishes.
    """
    import torch

    from .distill import evaluate, fit
    t_start = time.time()
    if executor not in ("local", "ray", "inline"):
        raise ModelError(f"unknown executor {executor!r}", "compress --executor", "Use local, inline or ray")
    if workers < 1:
        raise ModelError(f"workers must be >= 1, got {workers}", "compress --workers", "Use e.g. 2")
    if measure not in ("auto", "target", "estimate"):
        raise ModelError(f"unknown measure {measure!r}", "compress", "Use auto, target or estimate")
    for name, v in (("flash", flash), ("ram", ram), ("latency", latency)):
        if v is not None and v <= 0:
            raise ModelError(f"the {name} budget must be positive, got {v}", f"compress --{name}",
                             "Give e.g. --flash 32KiB --ram 8KiB")
    tk = make_task(task, metric)
    max_drop = max_accuracy_drop if tk.classification else max_error_increase
    from ..outputs import check_output_dir, prepare_in_place
    from ..targets import load_target
    load_target(target)  # an unknown target is found now, not after the training
    if data is None and example not in ("mnist", "digits"):
        raise ModelError(f"unknown example {example!r}", "compress --example", "Use mnist or digits")
    plan = check_output_dir(out_dir, force=force)  # before any training
    out = plan.dest
    foreign = prepare_in_place(plan, OUTPUT_NAMES)
    write_manifest(out, {"kind": "compress", "complete": False}, skip=foreign)
    budgets = {"flash": flash, "ram": ram, "latency": latency, "max_drop": max_drop}
    ex_epochs, ex_lr = 12, 3e-3
    if data is None:
        if not tk.classification:
            raise ModelError("the built-in examples are classification tasks", "run_compress", "Pass your data")
        splits, make, ex_epochs, ex_lr = _example(example, seed)
        if model is None:
            torch.manual_seed(seed)
            model = make()
    elif model is None:
        raise ModelError("data given without a model", "run_compress", "Pass model=<nn.Module> too")
    else:
        splits = _splits_from(data, tk, seed)
    epochs = epochs if epochs is not None else (max(3, ex_epochs // 2) if quick else ex_epochs)
    lr = lr if lr is not None else ex_lr
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(splits.x_val[:1]))
    except Exception as e:
        raise ModelError(f"the model cannot run on the data: {str(e).splitlines()[0]}", "run_compress",
                         f"Give samples shaped like the model's input (got {tuple(splits.x_val.shape[1:])} "
                         "per sample)") from None
    torch.manual_seed(seed)
    if tk.classification and _needs_training(model, splits.x_val, splits.y_val):
        if verbose:
            print(f"[compress] training the float baseline ({epochs} epochs)", file=sys.stderr)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread, like the trials: the same numbers on every run
        try:
            fit(model, splits.x_train, splits.y_train, epochs=epochs, lr=lr, seed=seed, verbose=verbose,
                label="baseline", task=tk)
        finally:
            torch.set_num_threads(threads)
    model.eval()
    base = evaluate(model, splits.x_val, splits.y_val, tk)
    base_test = evaluate(model, splits.x_test, splits.y_test, tk)
    if verbose:
        print(f"[compress] {splits.sizes()}; baseline fp32 validation {tk.score_name} {tk.fmt(base)}", file=sys.stderr)
    data_path = out / "data.npz"
    splits.save(data_path)
    src, inline_reason = _baseline_source(model, source, out, executor)
    from ..targets import load_target
    round_to = 4 if getattr(load_target(target), "dsp", False) else 1
    sens_path = _sensitivity(model, splits, tk, round_to, out, verbose)
    job0 = {"source": src.to_json(), "data": str(data_path), "target": target, "epochs": epochs, "lr": lr,
            "seed": seed, "measure": measure, "task": tk.to_json(), "round_to": round_to,
            "sensitivity": str(sens_path) if sens_path else None, "flash_budget": flash, "max_drop": max_drop}
    rows: list[dict] = []
    jsonl = out / "trials.jsonl"
    jsonl.write_text("")
    notes = list(splits.notes) + [f"splits: {splits.sizes()}; validation selects, test only reports the chosen one"]

    def record(row):
        rows.append(row)
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _write_outputs(out, rows, budgets, base, target, tk, notes=notes)
        write_manifest(out, {"kind": "compress", "complete": False}, skip=foreign)

    given = candidates is not None
    cands = list(candidates) if given else None
    failures: list[str] = []
    n_total = len(cands) if given else None
    progress = Progress(n_total if given else None, verbose, _describe(tk))
    items = lambda cs, start: [(c, dict(job0, dir=str(out / "trials" / f"{start + i:02d}")))  # noqa: E731
                               for i, c in enumerate(cs)]
    try:
        if not given:
            first = [{"method": "ptq"}]  # the plain int8 bundle sizes the other candidates
            failures += run_trials(items(first, 0), record, executor="inline", workers=1, progress=progress,
                                   trial_fn=_trial)
            ptq = next((r for r in rows if r["method"] == "ptq"), None)
            if ptq is not None and ptq.get("flash_bytes"):
                from .mixed import fixed_bytes
                job0["fixed_bytes"] = fixed_bytes(ptq["flash_bytes"], model)
            if flash is not None and ptq is not None and ptq.get("flash_bytes"):
                f8, f4, how = _size(model, splits, target, flash, ptq, round_to, measure, verbose)
                cands = sized_candidates(f8, f4, quick)
                notes.append(how)
            else:
                cands = [c for c in default_candidates(quick) if c["method"] != "ptq"]
            progress.total = 1 + len(cands)
            failures += run_trials(items(cands, 1), record, executor=executor, workers=workers, progress=progress,
                                   inline_reason=inline_reason, trial_fn=_trial)
        else:
            failures += run_trials(items(cands, 0), record, executor=executor, workers=workers, progress=progress,
                                   inline_reason=inline_reason, trial_fn=_trial)
    except KeyboardInterrupt:
        print(f"\n[compress] interrupted: {len(rows)} finished trials kept in {out}", file=sys.stderr)
        raise
    if not rows:
        raise ToolError(f"no trial finished ({len(failures)} failed): " + "; ".join(failures[:3]), str(out),
                        "See the trials' worker.log files; rerun with --executor inline and EDGECOMP_DEBUG=1")
    from .finalize import finalize
    final = finalize(rows, budgets, base, tk, target, out, splits, base_test=base_test, finalists=finalists,
                     firmware=firmware_test, verbose=verbose)
    summary = _write_outputs(out, rows, budgets, base, target, tk, final=final, notes=notes, failures=failures,
                             seconds=time.time() - t_start)
    write_manifest(out, {"kind": "compress", "complete": True}, skip=foreign)
    if verbose:
        print((out / "pareto.md").read_text())
    return summary


def _size(model, splits, target, flash, ptq, round_to, measure, verbose) -> tuple[float, float | None, str]:
    """(int8 fraction, int4 fraction, note) of the parameters a uniformly narrowed network keeps within
    the flash budget: by compiling the shapes (:mod:`edgecomp.compress.sizing`), or from the plain
    int8 bundle's bytes per parameter when the search only estimates."""
    import torch

    from .candidates import params_fraction
    guess = params_fraction(flash, ptq["flash_bytes"], ptq["params"])
    if measure == "estimate" or not (0.003 < guess < 0.95):
        f4 = min(2 * guess, 1.0) if 0.003 < guess < 0.95 else None
        return guess, f4, (f"structural candidates sized from the plain int8 bundle's bytes per parameter "
                           f"({fmt_bytes(ptq['flash_bytes'])}, {ptq['params']:,} parameters)")
    from .sizing import size_to_flash
    ex = torch.from_numpy(splits.x_val[:1])
    calib = splits.x_train[:100]
    try:
        s8 = size_to_flash(model, ex, calib, target, flash, round_to=round_to, bits=8,
                           start=(ptq["params"], ptq["flash_bytes"]), guess=guess * 0.95, verbose=verbose)
        s4 = size_to_flash(model, ex, calib, target, flash, round_to=round_to, bits=4, guess=min(2 * s8["fraction"], 1.0),
                           verbose=verbose)
    except Exception as e:  # noqa: BLE001 - a toolchain problem: the estimate still sizes the candidates
        return guess, min(2 * guess, 1.0), f"sizing by compiling failed ({type(e).__name__}: {e}); sized from bytes per parameter"
    return s8["fraction"], s4["fraction"] if s4["fits"] else None, (
        f"structural candidates sized by compiling untrained narrowed copies for {target}: {s8['fraction']:.1%} of the "
        f"parameters in int8 ({fmt_bytes(s8['flash'])}), {s4['fraction']:.1%} with 4-bit weights "
        f"({fmt_bytes(s4['flash'])})")


def _trial(spec: dict, job: dict) -> dict:
    return run_trial(spec, job)  # looked up at call time (tests replace run_trial)


def _needs_training(model, x, y) -> bool:
    """Train only an untrained model (chance-level accuracy)."""
    from .distill import accuracy
    return accuracy(model, x[:200], y[:200]) < 0.3


def _baseline_source(model, source: ModelSource | None, out: Path, executor: str) -> tuple[ModelSource, str]:
    """How workers get the baseline, and why trials must run in this process ("" when they need not)."""
    import torch
    if source is not None and source.kind == "factory":
        sd = out / "baseline.state.pt"
        torch.save(model.state_dict(), sd)
        return ModelSource("factory", source.path, source.factory, str(sd.resolve())), ""
    base_path = out / "baseline.pt"
    torch.save(model, base_path)
    ok, why, imports = portable(model)
    src = ModelSource("pickle", str(base_path.resolve()), imports=imports)
    if executor == "inline" or ok:
        return src, ""
    if executor == "ray":
        raise ModelError(f"the Ray workers cannot rebuild the model: {why}", "run_compress",
                         "Define the model's class in an importable module, or use executor='local'")
    return src, f"{why}; define the model's class in an importable module to use worker processes"


def _sensitivity(model, splits, task, round_to, out: Path, verbose: bool) -> Path | None:
    """Per-group pruning sensitivity on the validation split -> sensitivity.{json,md,png}; None when no
    group can be pruned (then the width candidates fail with that reason)."""
    import torch

    from .width import sensitivity, sensitivity_plot, sensitivity_table
    try:
        sens = sensitivity(model, torch.from_numpy(splits.x_val[:1]), splits.x_val, splits.y_val, task=task,
                           round_to=round_to)
    except Exception as e:  # noqa: BLE001 - an untraceable model: structural candidates say why
        _atomic_write(out / "sensitivity.md", f"No pruning sensitivity: {e}\n")
        return None
    p = out / "sensitivity.json"
    _atomic_write(p, json.dumps(sens) + "\n")
    _atomic_write(out / "sensitivity.md", "# Per-layer pruning sensitivity (validation split)\n\n"
                  + sensitivity_table(sens, task.drop_unit) + "\n")
    try:
        sensitivity_plot(sens, out / "sensitivity.png", task.drop_unit)
    except Exception as e:  # noqa: BLE001 - a plot must never lose the results
        print(f"  (sensitivity plot skipped: {e})", file=sys.stderr)
    if verbose:
        print(f"[compress] pruning sensitivity of {len(sens['groups'])} channel groups -> {out / 'sensitivity.md'}",
              file=sys.stderr)
    return p


def _write_outputs(out: Path, rows: list[dict], budgets: dict, base: float, target: str, task, *,
                   final: dict | None = None, notes=(), failures=(), seconds: float | None = None) -> dict:
    notes = list(notes) + [f"failed: {f}" for f in failures]
    _atomic_write(out / "pareto.md", results_markdown(rows, budgets, base, target, task, final=final, notes=notes))
    sel = select(rows, budgets, base, task)
    if final is not None:
        fits = final["chosen"] is not None
        chosen = final["chosen"] if fits else sel["chosen"]  # else the closest, to say what it misses
    else:
        chosen, fits = sel["chosen"], sel["fits"]
    summary = {"target": target, "task": task.to_json(), "budgets": budgets, "baseline_score": base,
               "trials": len(rows), "fits": fits, "chosen": chosen["label"] if chosen else None,
               "failing_budgets": sel.get("failing", {}) if not fits else {},
               "pareto": [r["label"] for r in pareto_front(rows)], "final": final is not None}
    if task.classification:
        summary["baseline_accuracy"] = base
    if final is not None:
        summary["test"] = final.get("test")
        summary["rejected"] = final.get("skipped", [])
        summary["failed"] = list(failures)
        if seconds is not None:
            summary["seconds"] = round(seconds, 1)
        if fits and not chosen.get("unconfirmed"):
            summary["bundle"] = str(out / "bundle")
            summary["chosen_row"] = {k: v for k, v in chosen.items() if k != "spec"}
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    if rows:
        try:
            plot_pareto(rows, base, budgets, task, out / "pareto.png", chosen=chosen["label"] if fits and chosen else None)
        except Exception as e:  # a plot must never lose the results
            print(f"  (plot skipped: {e})", file=sys.stderr)
    if final is not None and fits:
        for src, name in ((chosen["onnx"], "chosen" + "".join(Path(chosen["onnx"]).suffixes)),
                          (chosen["model_pt"], "chosen.pt")):
            tmp = out / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, out / name)
    return summary


def compress_cli(a) -> int:
    """`edgecomp compress` (arguments: see cli.build_parser)."""
    model = data = source = None
    if getattr(a, "model", None):
        model, source = load_user_model(a.model, getattr(a, "weights", None))
        if not getattr(a, "data", None):
            raise ModelError("--model needs --data", "edgecomp compress", "Give --data train.npz (arrays x and y)")
        data = {"train": a.data, "val": getattr(a, "val", None), "test": getattr(a, "test", None)}
    elif getattr(a, "data", None):
        raise ModelError("--data needs --model", "edgecomp compress", "Give --model file.py:factory --weights state.pt")
    elif getattr(a, "weights", None):
        raise ModelError("--weights needs --model", "edgecomp compress", "Give --model file.py:factory")
    t0 = time.time()
    summary = run_compress(model, data, example=a.example, target=a.target, out_dir=a.output, flash=a.flash,
                           ram=a.ram, latency=a.latency, max_accuracy_drop=a.max_accuracy_drop,
                           max_error_increase=getattr(a, "max_error_increase", None),
                           task=getattr(a, "task", "classification"), metric=getattr(a, "metric", None),
                           executor=a.executor, workers=a.workers, quick=a.quick, seed=getattr(a, "seed", 0),
                           measure="estimate" if getattr(a, "estimate", False) else getattr(a, "measure", "auto"),
                           source=source, force=getattr(a, "force", False))
    if not summary["fits"]:
        failing = ", ".join(summary["failing_budgets"]) or "the combination of budgets"
        print(f"edgecomp compress: no candidate meets every budget ({failing}); closest: {summary['chosen']}. "
              f"See {Path(a.output) / 'pareto.md'}", file=sys.stderr)
        return 3
    t = summary.get("test") or {}
    tk = make_task(**summary["task"])
    print(f"chosen: {summary['chosen']} -> {Path(a.output) / 'bundle'} (test {tk.score_name} "
          f"{tk.fmt(t.get('score'))} on the {t.get('where', 'bundle')}; {fmt_seconds(time.time() - t0)})")
    return 0
