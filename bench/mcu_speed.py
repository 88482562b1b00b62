"""Cortex-M speed: reference C kernels vs the DSP-optimized kernels, counted under QEMU.

    python bench/mcu_speed.py [--targets cortex-m4 cortex-m7 cortex-m3 cortex-m33 cortex-m55] [--inputs 2] [--out bench/results/mcu_speed.md]

For the four MLPerf Tiny int8 models and the digits demo model, on each target:
instructions per inference and per MAC under QEMU `-icount shift=0` (deterministic
counts, SysTick ticks x instructions per tick) with `--kernels reference` and with
`--kernels dsp` (cores with the DSP extension only: the Cortex-M3 has none and runs
the reference kernels) and, on those cores, `--kernels dsp --optimize speed` (the
matrix-product layers' weights stored as int16 in flash); flash of every build
(`arm-none-eabi-size`), and the largest output difference of the optimized firmwares
from TensorFlow Lite Micro (MLPerf) or from the reference-kernel firmware (demo). Then
per-layer tables for DS-CNN and ResNet-8 on the Cortex-M4 with the optimized kernels.

Beside the exact instruction counts, the optimized builds report *estimated* cycles (`edgecomp run
--cycles`: the core's timing table over the instructions QEMU executed, docs/cycles.md) and cycles
per MAC; on the Cortex-M4 also estimated ms at the NUCLEO-L4R5ZI's 120 MHz. Speed work is judged
in estimated cycles; instructions stay the exact, cheap count.
The Cortex-M33 (mps2-an505) and Cortex-M55 (mps3-an547) run today's DSP kernels (the Helium
kernels are measured standalone by bench/mve_kernels.py); a build that does not fit a target's
flash (the M55's 512 KB ITCM with --optimize speed's int16 weights) is reported as such.
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


L4R5ZI_HZ = 120e6  # the NUCLEO-L4R5ZI's clock (MLPerf Tiny v1.1 results were measured at it)
#: MLPerf Tiny v1.1, NUCLEO-L4R5ZI at 120 MHz, X-CUBE-AI 8.1 (closed division latency, ms)
PUBLISHED_MS = {"kws_ref_model": 62.9, "pretrainedResnet_quant": 214.0}


def run(model: Path, target: str, kernels: str, x: np.ndarray, work: Path) -> dict | None:
    """One build measured; None when it does not fit the target."""
    from edgecomp import api
    from edgecomp.errors import DoesNotFitError

    out = work / f"{model.stem}-{target}-{kernels}"
    opts = {"kernels": "dsp", "optimize": "speed"} if kernels == "speed" else {"kernels": kernels}
    try:
        man = api.compile_model(str(model), target, out, options=opts)
    except DoesNotFitError as e:
        print(f"    does not fit: {e.what}", file=sys.stderr, flush=True)
        return None
    cycles = kernels != "reference"  # estimated cycles of the optimized builds (a second, traced run)
    pred = api.run_bundle(out, x, progress=False, cycles=cycles,
                          clock_hz=L4R5ZI_HZ if target == "cortex-m4" else None)
    return {"manifest": man, "outputs": pred.outputs.reshape(len(x), -1).astype(np.int32),
            "instructions": pred.result.instructions_per_inference, "ticks": pred.result.layer_ticks,
            "per_tick": man.get("probe", {}).get("qemu_insns_per_systick") or 0, "cycles": pred.result.cycles}


TARGET_ORDER = ["cortex-m4", "cortex-m7", "cortex-m3", "cortex-m33", "cortex-m55"]


def merge_rows(lines: list[str], old: str, targets: list[str]) -> list[str]:
    """``lines`` with, in each table whose first two columns are model and target, the rows of
    ``old``'s table with the same header for the targets not in ``targets``, ordered by model (as
    first seen), target (TARGET_ORDER) and the rows' own order."""
    old_lines = old.splitlines()
    out, i = [], 0
    while i < len(lines):
        ln = lines[i]
        out.append(ln)
        if not ln.startswith("| model | target |") or ln not in old_lines:
            i += 1
            continue
        out.append(lines[i + 1])  # the rule
        j, new_rows = i + 2, []
        while j < len(lines) and lines[j].startswith("| "):
            new_rows.append(lines[j])
            j += 1
        k, kept = old_lines.index(ln) + 2, []
        while k < len(old_lines) and old_lines[k].startswith("| "):
            if old_lines[k].split(" | ")[1] not in targets:
                kept.append(old_lines[k])
            k += 1
        rows = new_rows + kept
        models = list(dict.fromkeys(r.split(" | ")[0] for r in rows))

        def key(r, rows=rows, models=models):
            m, t = r.split(" | ")[:2]
            return (models.index(m), TARGET_ORDER.index(t) if t in TARGET_ORDER else len(TARGET_ORDER),
                    rows.index(r))
        out += sorted(rows, key=key)
        i = j
    return out


def main(argv=None) -> int:
    from edgecomp.reference import tflm_run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="*", default=["cortex-m4", "cortex-m7", "cortex-m3", "cortex-m33", "cortex-m55"])
    p.add_argument("--models", type=Path, default=models_dir())
    p.add_argument("--inputs", type=int, default=2, help="random inputs per model run in QEMU")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mcu_speed.md")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of the targets not rerun from the existing --out file (its two "
                        "tables by model and target), e.g. after a change to one core's kernels")
    a = p.parse_args(argv)
    old = a.out.read_text() if a.merge and a.out.is_file() else ""
    from edgecomp.outputs import check_output_file
    check_output_file(a.out, "--out", create_parent=True)  # before the work
    t0 = time.time()
    rows, layers, cyc = [], {}, []
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
                    r = run(path, target, k, x, work)
                    if r is not None:
                        r["x"] = x
                        res[k] = r
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
                for label, r in (("default", opt), ("speed", fast)):
                    if r is not None and r.get("cycles") is not None:
                        cyc.append({"model": name, "target": target, "mode": label, "macs": macs,
                                    "instructions": r["cycles"].total.instructions, "cycles": r["cycles"].total.cycles,
                                    "model_table": r["cycles"].model.get("table")})
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
                                                ref["ticks"], ref["per_tick"], r["cycles"])

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
              "optimized one). Max diff: the larger of the two optimized builds'. The Cortex-M33 (QEMU mps2-an505, "
              "50 instructions a SysTick tick) and Cortex-M55 (mps3-an547, 31.25) run the same DSP kernels as the M4; "
              "n/a in a speed column: that build (int16 weights) does not fit the target (AD01 on the M55's 512 KB "
              "ITCM). The Helium kernels, standalone: bench/results/mve_kernels.md."]
    if cyc:
        lines += ["", "Estimated cycles of the optimized builds (`edgecomp run --cycles`: the core's timing table "
                  "over the instructions QEMU executed; estimates, not measurements, docs/cycles.md). On the "
                  "Cortex-M4 (the NUCLEO-L4R5ZI's core) also estimated ms at its 120 MHz, and the published MLPerf "
                  "Tiny v1.1 latency of X-CUBE-AI 8.1 on that board for comparison:", "",
                  "| model | target | mode | MACs | instructions | instr/MAC | est. cycles | cyc/instr | cyc/MAC "
                  "| est. ms at 120 MHz | X-CUBE-AI 8.1 on L4R5ZI (ms) | timing table |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for c in cyc:
            m4 = c["target"] == "cortex-m4"
            pub = PUBLISHED_MS.get(c["model"]) if m4 else None
            lines.append(f"| {c['model']} | {c['target']} | {c['mode']} | {c['macs']:,} | {c['instructions']:,} | "
                         f"{c['instructions'] / c['macs']:.2f} | {c['cycles']:,.0f} | "
                         f"{c['cycles'] / c['instructions']:.2f} | {c['cycles'] / c['macs']:.2f} | "
                         f"{f(c['cycles'] * 1e3 / L4R5ZI_HZ if m4 else None, '{:.1f}')} | {f(pub, '{:.1f}')} | "
                         f"{c['model_table']} |")
    for (name, label), (mlayers, ticks, per_tick, rticks, rper, cyc_rep) in layers.items():
        lines += ["", f"Per layer, {name} on cortex-m4 ({label}):", "",
                  "| # | layer | op | MACs | instructions | instr/MAC | est. cycles | cyc/MAC | reference instr. "
                  "| speed-up | kernel |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        crow = cyc_rep.rows() if cyc_rep is not None else []
        carry = None  # a layer computed row by row inside the next one: its MACs and reference time join it
        for i, (lay, t, rt) in enumerate(zip(mlayers, ticks, rticks)):
            ins, rins = t * per_tick, rt * rper
            if lay.get("fused_into"):
                carry = (lay.get("macs", 0), rins)
                lines.append(f"| {i} | {lay['name'][:40]} | {lay['op']} | {lay.get('macs', 0):,} | "
                             f"(in {lay['fused_into'][:40]}) | - | - | - | {rins:,.0f} | - | |")
                continue
            macs = lay.get("macs", 0) + (carry[0] if carry else 0)
            rall = rins + (carry[1] if carry else 0)
            ipm = f"{ins / macs:.2f}" if macs else "-"
            sp = f"{rall / ins:.2f}x" if ins else "-"
            note = f" (+ layer {i - 1})" if carry else ""
            est = crow[i]["cycles"] if i < len(crow) else None
            cpm = f"{est / macs:.2f}" if (est and macs) else "-"
            lines.append(f"| {i} | {lay['name'][:40]}{note} | {lay['op']} | {macs:,} | {ins:,.0f} | {ipm} | "
                         f"{f(est, '{:,.0f}')} | {cpm} | {rall:,.0f} | {sp} | {lay.get('kernel', '')} |")
            carry = None
    if old:
        lines = merge_rows(lines, old, a.targets)
    cmd = f"python bench/mcu_speed.py --inputs {a.inputs}"
    if old:
        cmd = (f"python bench/mcu_speed.py --targets {' '.join(a.targets)} --inputs {a.inputs} --merge`, the other "
               f"targets' rows kept from an earlier `{cmd}")
    lines += ["", f"Command: `{cmd}` ({time.time() - t0:.0f} s on this machine)"]
    table = "\n".join(lines)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
