"""Cortex-M speed: reference C kernels vs the DSP-optimized kernels, counted under QEMU.

    python bench/mcu_speed.py [--targets cortex-m4 cortex-m7 cortex-m3] [--inputs 2] [--out bench/results/mcu_speed.md]

For the four MLPerf Tiny int8 models and the digits demo model, on each target:
instructions per inference and per MAC under QEMU `-icount shift=0` (deterministic
counts, SysTick ticks x instructions per tick) with `--kernels reference` and with
`--kernels dsp` (cores with the DSP extension only: the Cortex-M3 has none and runs
the reference kernels) and, on those cores, `--kernels dsp --optimize speed` (the
matrix-product layers' weights stored as int16 in flash); flash of every build
(`arm-none-eabi-size`), and the largest output difference of the optimized firmwares
from TensorFlow Lite Micro (MLPerf) or from the reference-kernel firmware (demo). Then
per-layer tables for DS-CNN and ResNet-8 on the Cortex-M4 with the optimized kernels.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLPERF = ["ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"]


def models_dir() -> Path:
    """EDGECOMP_MLPERF_DIR, else ../shared/benchmarks/mlperf_tiny beside the repository (as the tests)."""
    return Path(os.environ.get("EDGECOMP_MLPERF_DIR", ROOT.parent / "shared" / "benchmarks" / "mlperf_tiny"))


def demo_qdq(work: Path) -> tuple[Path, np.ndarray]:
    """The demo CNN trained as `edgecomp demo` trains it, as an int8 QDQ ONNX file, plus test digits."""
    import torch

    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.demo import digits_split, make_cnn, train
    from edgecomp.frontends.torch import export_onnx

    torch.set_num_threads(2)
    xtr, ytr, xte, _ = digits_split(0)
    torch.manual_seed(0)
    model = train(make_cnn(), xtr, ytr, epochs=40, seed=0, verbose=False)
    f32 = export_onnx(model, torch.from_numpy(xte[:1]), work / "digits.onnx")
    q = quantize_onnx(f32, xtr[:300], work / "digits.int8.onnx")
    return Path(q), xte


def kernel_choices(target: str) -> list[str]:
    """The builds measured on a target: reference kernels; DSP kernels (default optimization, and
    --optimize speed) on cores with the DSP extension."""
    from edgecomp.targets import load_target
    return ["reference", "dsp", "speed"] if getattr(load_target(target), "dsp", False) else ["reference"]


def run(model: Path, target: str, kernels: str, x: np.ndarray, work: Path) -> dict:
    from edgecomp import api

    out = work / f"{model.stem}-{target}-{kernels}"
    opts = {"kernels": "dsp", "optimize": "speed"} if kernels == "speed" else {"kernels": kernels}
    man = api.compile_model(str(model), target, out, options=opts)
    pred = api.run_bundle(out, x, progress=False)
    return {"manifest": man, "outputs": pred.outputs.reshape(len(x), -1).astype(np.int32),
            "instructions": pred.result.instructions_per_inference, "ticks": pred.result.layer_ticks,
            "per_tick": man.get("probe", {}).get("qemu_insns_per_systick") or 0}


def main(argv=None) -> int:
    from edgecomp.reference import tflm_run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="*", default=["cortex-m4", "cortex-m7", "cortex-m3"])
    p.add_argument("--models", type=Path, default=models_dir())
    p.add_argument("--inputs", type=int, default=2, help="random inputs per model run in QEMU")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mcu_speed.md")
    a = p.parse_args(argv)
    from edgecomp.outputs import check_output_file
    check_output_file(a.out, "--out", create_parent=True)  # before the work
    t0 = time.time()
    rows, layers = [], {}
    with tempfile.TemporaryDirectory(prefix="ec-mcu-speed-") as td:
        work = Path(td)
        jobs = []
        for name in MLPERF:
            path = a.models / f"{name}.tflite"
            if path.is_file():
                jobs.append((name, path, None))
        print("... training the digits demo model", file=sys.stderr, flush=True)
        dq, xte = demo_qdq(work)
        jobs.append(("digits demo", dq, xte))
        for name, path, xdemo in jobs:
            for target in a.targets:
                res = {}
                for k in kernel_choices(target):
                    print(f"... {name} on {target}, {k}", file=sys.stderr, flush=True)
                    if xdemo is None:
                        from edgecomp.frontends.tflite import load_tflite
                        g = load_tflite(path)
                        shape = g.tensors[g.inputs[0]].shape
                        x = np.random.default_rng(3).integers(-128, 128, size=(a.inputs,) + tuple(shape[1:]),
                                                              dtype=np.int8)
                    else:
                        x = xdemo[:a.inputs]
                    res[k] = run(path, target, k, x, work)
                    res[k]["x"] = x
                ref = res["reference"]
                opt, fast = res.get("dsp"), res.get("speed")
                macs = ref["manifest"]["macs"]
                if xdemo is None:
                    want = tflm_run(path, ref["x"]).reshape(len(ref["x"]), -1).astype(np.int32)
                    diff_vs = "TFLM"
                else:
                    want = ref["outputs"]
                    diff_vs = "reference firmware"
                best = opt or ref
                diff = max(int(np.abs(r["outputs"] - want).max()) for r in (best, fast) if r is not None)
                rows.append({"model": name, "target": target, "macs": macs,
                             "ref_instr": ref["instructions"], "opt_instr": opt["instructions"] if opt else None,
                             "fast_instr": fast["instructions"] if fast else None,
                             "ref_flash": ref["manifest"]["flash_bytes"],
                             "opt_flash": opt["manifest"]["flash_bytes"] if opt else None,
                             "fast_flash": fast["manifest"]["flash_bytes"] if fast else None,
                             "ram": best["manifest"]["ram_bytes"],
                             "fast_ram": fast["manifest"]["ram_bytes"] if fast else None,
                             "diff": diff, "diff_vs": diff_vs})
                if opt and target == "cortex-m4" and name in ("kws_ref_model", "pretrainedResnet_quant"):
                    for label, r in (("optimized kernels", opt), ("optimized kernels, --optimize speed", fast)):
                        layers[(name, label)] = (r["manifest"]["layers"], r["ticks"], r["per_tick"],
                                                ref["ticks"], ref["per_tick"])

    def f(v, fmt="{:,}"):
        return "n/a" if v is None else fmt.format(v)

    lines = ["| model | target | MACs | instr. reference | instr/MAC | instr. optimized | instr/MAC | speed-up "
             "| instr. speed | instr/MAC | speed-up | flash ref. (B) | flash opt. (B) | flash speed (B) | RAM opt. (B) "
             "| RAM speed (B) | max diff (vs) |", "|" + "---|" * 17]

    def per_mac(v, macs):
        return f(v / macs if v else None, "{:.2f}")

    def ratio(a, b):
        return f(a / b if b else None, "{:.2f}x")
    for r in rows:
        m = r["macs"]
        lines.append(f"| {r['model']} | {r['target']} | {m:,} | {f(r['ref_instr'])} | {r['ref_instr'] / m:.2f} | "
                     f"{f(r['opt_instr'])} | {per_mac(r['opt_instr'], m)} | {ratio(r['ref_instr'], r['opt_instr'])} | "
                     f"{f(r['fast_instr'])} | {per_mac(r['fast_instr'], m)} | {ratio(r['ref_instr'], r['fast_instr'])} | "
                     f"{r['ref_flash']:,} | {f(r['opt_flash'])} | {f(r['fast_flash'])} | {r['ram']:,} | "
                     f"{f(r['fast_ram'])} | {r['diff']} ({r['diff_vs']}) |")
    lines += ["", "Optimized = `--kernels dsp` (SMLAD/SXTB16 kernels; what `--kernels auto`, the default, picks on "
              "cores with the DSP extension), with the default `--optimize balanced`. Speed = `--kernels dsp "
              "--optimize speed`: the matrix-product layers' weights stored as int16 in flash (about twice their "
              "bytes), their requantization constants too; the same arena. The Cortex-M3 has no DSP extension: "
              "reference kernels only. RAM = arena + static + stack peak (the reference build's where there is no "
              "optimized one). Max diff: the larger of the two optimized builds'."]
    for (name, label), (mlayers, ticks, per_tick, rticks, rper) in layers.items():
        lines += ["", f"Per layer, {name} on cortex-m4 ({label}):", "",
                  "| # | layer | op | MACs | instructions | instr/MAC | reference instr. | speed-up | kernel |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|"]
        carry = None  # a layer computed row by row inside the next one: its MACs and reference time join it
        for i, (lay, t, rt) in enumerate(zip(mlayers, ticks, rticks)):
            ins, rins = t * per_tick, rt * rper
            if lay.get("fused_into"):
                carry = (lay.get("macs", 0), rins)
                lines.append(f"| {i} | {lay['name'][:40]} | {lay['op']} | {lay.get('macs', 0):,} | "
                             f"(in {lay['fused_into'][:40]}) | - | {rins:,.0f} | - | |")
                continue
            macs = lay.get("macs", 0) + (carry[0] if carry else 0)
            rall = rins + (carry[1] if carry else 0)
            ipm = f"{ins / macs:.2f}" if macs else "-"
            sp = f"{rall / ins:.2f}x" if ins else "-"
            note = f" (+ layer {i - 1})" if carry else ""
            lines.append(f"| {i} | {lay['name'][:40]}{note} | {lay['op']} | {macs:,} | {ins:,.0f} | {ipm} | "
                         f"{rall:,.0f} | {sp} | {lay.get('kernel', '')} |")
            carry = None
    lines += ["", f"Command: `python bench/mcu_speed.py --inputs {a.inputs}` ({time.time() - t0:.0f} s on this machine)"]
    table = "\n".join(lines)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
