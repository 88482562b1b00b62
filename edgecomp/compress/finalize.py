"""The end of a search: compile the finalists, choose, measure the test split on the firmware.

Estimates never choose: the fitting candidates are taken best first (validation ranking,
:func:`edgecomp.compress.selection.ranked`) and each is compiled for the target unless its trial
already did; one that the compiler puts over a budget is rejected (and shown so) and the next is
tried.  The chosen bundle is copied to ``<out>/bundle`` and run on the test split: under QEMU for
a microcontroller target (or built with the host's gcc when QEMU is missing, same C), natively for
``host``.  That firmware score is the number the search reports.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np

from .selection import fmt_bytes, ranked, violations

__all__ = ["compile_candidate", "finalize", "firmware_score"]


def compile_candidate(row: dict, target: str, out_dir: Path) -> dict:
    """Compile a trial's model for ``target`` into ``out_dir``; returns the manifest."""
    from .compile import compile_onnx
    return compile_onnx(Path(row["onnx"]), target, out_dir, precision=row.get("precision", "int8"),
                        weight_plan=row.get("weight_plan"))


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None


def firmware_score(bundle: Path, x: np.ndarray, y: np.ndarray, task, target: str) -> dict:
    """Run the test split through the compiled bundle: QEMU for a microcontroller target (the host's
    gcc when QEMU is missing: the same C), natively for host.  {score, outputs, where}."""
    from ..api import run_bundle
    emulate = target != "host" and _have("qemu-system-arm")
    pred = run_bundle(bundle, x, emulate=emulate, progress=False)
    out = pred.outputs_float.reshape(len(x), -1)
    where = (f"firmware under QEMU ({target})" if emulate else
             "host build of the bundle" + ("" if target == "host" else " (qemu-system-arm is missing)"))
    return {"score": task.score(out, y), "where": where, "outputs": out}


def _copy_bundle(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("build"))
    old = dst.with_name(f".{dst.name}.old")
    if dst.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.exists():
        shutil.rmtree(old)


def finalize(rows: list[dict], budgets: dict, base: float, task, target: str, out: Path, splits, *,
             base_test: float, finalists: int = 3, firmware: bool = True, verbose: bool = True) -> dict:
    """Compile finalists best first until one fits; copy its bundle; score it on the test split.
    Returns {"chosen": row or None, "test": {...} or None, "skipped": [...]}; rows of candidates the
    compiler put over budget get ``rejected``."""
    from .report import onnx_predict
    skipped: list[str] = []
    chosen = None
    compiled = 0
    for r in ranked(rows, budgets, base, task):
        if r.get("estimated") or not r.get("bundle") or not Path(r["bundle"]).is_dir():
            if compiled >= finalists:
                break
            compiled += 1
            where = out / "finalists" / "".join(c if c.isalnum() else "_" for c in r["label"])
            if verbose:
                print(f"[compress] compiling finalist {r['label']} for {target}", file=sys.stderr, flush=True)
            try:
                man = compile_candidate(r, target, where / "bundle")
            except Exception as e:  # noqa: BLE001 - said in the report, the next finalist is tried
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if target != "host" and not _have("arm-none-eabi-gcc"):  # no toolchain here: cannot confirm
                    r["unconfirmed"] = f"not compiled ({why})"
                    chosen = r
                    break
                r["rejected"] = f"did not compile ({why})"
                skipped.append(f"{r['label']}: {r['rejected']}")
                continue
            was = fmt_bytes(r.get("flash_bytes"))
            r.update(flash_bytes=man.get("flash_bytes"), ram_bytes=man.get("ram_bytes"), estimated=False,
                     bundle=str(where / "bundle"), estimate_reason=None, compiled_final=True)
            if target != "host" and _have("qemu-system-arm"):
                from ..api import run_bundle
                res = run_bundle(where / "bundle", splits.x_val[:1], emulate=True, progress=False).result
                r["instructions"] = res.instructions_per_inference
            v = violations(r, budgets, base, task)
            if v:
                r["rejected"] = f"estimated {was}, compiled {fmt_bytes(r['flash_bytes'])}: over " + ", ".join(v)
                skipped.append(f"{r['label']} ({r['rejected']})")
                continue
        chosen = r
        break
    if chosen is None:
        return {"chosen": None, "test": None, "skipped": skipped}
    test = None
    if chosen.get("unconfirmed"):  # no firmware to run: ONNX Runtime on the same model, and said so
        score = task.score(onnx_predict(chosen["onnx"], splits.x_test), splits.y_test)
        test = {"score": score, "where": f"ONNX Runtime ({chosen['unconfirmed']})", "samples": len(splits.x_test),
                "baseline": base_test, "ort": None,
                "misses_budget": budgets.get("max_drop") is not None and task.drop(base_test, score) >
                budgets["max_drop"] + 1e-9}
        return {"chosen": chosen, "test": test, "skipped": skipped}
    _copy_bundle(Path(chosen["bundle"]), out / "bundle")
    if firmware:
        fw = firmware_score(out / "bundle", splits.x_test, splits.y_test, task, target)
        ort = task.score(onnx_predict(chosen["onnx"], splits.x_test), splits.y_test)
        lim = budgets.get("max_drop")
        test = {"score": fw["score"], "where": fw["where"], "samples": len(splits.x_test), "baseline": base_test,
                "ort": ort, "misses_budget": lim is not None and task.drop(base_test, fw["score"]) > lim + 1e-9}
    return {"chosen": chosen, "test": test, "skipped": skipped}
