"""Cortex-M speed: reference C kernels vs the optimized kernels (DSP, Helium), counted under QEMU.

    python bench/mcu_speed.py [--targets cortex-m4 cortex-m7 cortex-m3 cortex-m33 cortex-m55] [--keep] [--inputs 2] [--out bench/results/mcu_speed.md]

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
The Cortex-M33 (mps2-an505) runs the DSP kernels; on the Cortex-M55 (mps3-an547) the optimized
build is the default `--kernels auto`, the Helium (MVE) kernels, compared in a table of its own with
`--kernels dsp` (no --optimize speed build there: it changes only DSP layers), with a per-layer
table for DS-CNN; no cycle estimates there (the trace reader's count differs from the probe's on
that core, for the Helium and the DSP builds alike).  A build that does not fit a target's flash is reported as such.

`--keep`: rows and per-layer tables of the targets not measured now are kept from the existing
`--out` file (rerun one target without the others' hour).
"""
from __future__ import annotations

import argparse
import os
import re
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
    """The builds measured on a target: reference kernels; on a core with Helium the default (Helium
    kernels) and the DSP kernels; on other cores with the DSP extension the DSP kernels (default
    optimization, and --optimize speed)."""
    from edgecomp.targets import load_target
    t = load_target(target)
    if getattr(t, "mve", False):
        return ["reference", "mve", "dsp"]
    return ["reference", "dsp", "speed"] if getattr(t, "dsp", False) else ["reference"]


TARGETS = ["cortex-m4", "cortex-m7", "cortex-m3", "cortex-m33", "cortex-m55"]
_LAYERS = re.compile(r"Per layer, (.+) on (\S+) \((.+)\):$")


def previous(path: Path, targets: list[str]) -> dict[str, list]:
    """--keep: what an earlier run wrote for the targets not measured now: rows of the main, Helium
    and cycles tables, per-layer tables (heading and lines), command lines."""
    keep: dict[str, list] = {"main": [], "mve": [], "cycles": [], "layers": [], "commands": []}
    if not path.is_file():
        return keep
    lines = path.read_text().splitlines()
    section, i = "main", 0
    while i < len(lines):
        ln = lines[i]
        m = _LAYERS.match(ln)
        if m:
            j = i + 2
            block = []
            while j < len(lines) and lines[j].startswith("|"):
                block.append(lines[j])
                j += 1
            if m[2] not in targets:
                keep["layers"].append((ln, block))
            i = j
            continue
        if ln.startswith("Estimated cycles"):
            section = "cycles"
        elif ln.startswith("Helium (MVE) kernels vs"):
            section = "mve"
        elif ln.startswith("Command:"):
            keep["commands"].append(ln)
        elif ln.startswith("| ") and not ln.startswith("| model") and not ln.startswith("| #"):
            cols = [c.strip() for c in ln.strip("|").split("|")]
            if len(cols) > 1 and cols[1] not in targets:
                keep[section].append(ln)
        i += 1
    return keep


def _row_key(line: str) -> tuple:
    """Rows sorted by model (MLPerf order, then the demo), then target."""
    model, target = [c.strip() for c in line.strip("|").split("|")][:2]
    return (MLPERF.index(model) if model in MLPERF else len(MLPERF),
            TARGETS.index(target) if target in TARGETS else len(TARGETS))


L4R5ZI_HZ = 120e6  # the NUCLEO-L4R5ZI's clock (MLPerf Tiny v1.1 results were measured at it)
#: MLPerf Tiny v1.1, NUCLEO-L4R5ZI at 120 MHz, X-CUBE-AI 8.1 (closed division latency, ms)
PUBLISHED_MS = {"kws_ref_model": 62.9, "pretrainedResnet_quant": 214.0}


def run(model: Path, target: str, kernels: str, x: np.ndarray, work: Path) -> dict | None:
    """One build measured; None when it does not fit the target."""
    from edgecomp import api
    from edgecomp.errors import DoesNotFitError

    out = work / f"{model.stem}-{target}-{kernels}"
    opts = {"kernels": "dsp", "optimize": "speed"} if kernels == "speed" else {"kernels": kernels}
    if kernels == "mve":
        opts = {"kernels": "auto"}  # the default: the Helium kernels where they apply
    try:
        man = api.compile_model(str(model), target, out, options=opts)
    except DoesNotFitError as e:
        print(f"    does not fit: {e.what}", file=sys.stderr, flush=True)
        return None
    # estimated cycles of the optimized builds (a second, traced run)
    cycles = kernels != "reference"
    pred = api.run_bundle(out, x, progress=False, cycles=cycles,
                          clock_hz=L4R5ZI_HZ if target == "cortex-m4" else None)
    return {"manifest": man, "outputs": pred.outputs.reshape(len(x), -1).astype(np.int32),
            "instructions": pred.result.instructions_per_inference, "ticks": pred.result.layer_ticks,
            "per_tick": man.get("probe", {}).get("qemu_insns_per_systick") or 0, "cycles": pred.result.cycles}


TARGET_ORDER = ["cortex-m4", "cortex-m7", "cortex-m3", "cortex-m33", "cortex-m55"]


def main(argv=None) -> int:
    from edgecomp.reference import tflm_run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="*", default=TARGETS)
    p.add_argument("--keep", action="store_true",
                   help="keep the existing --out file's rows of the targets not measured now")
    p.add_argument("--models", type=Path, default=models_dir())
    p.add_argument("--inputs", type=int, default=2, help="random inputs per model run in QEMU")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mcu_speed.md")
    p.add_argument("--merge", dest="keep", action="store_true", help="the same as --keep")
    a = p.parse_args(argv)
    from edgecomp.outputs import check_output_file
    check_output_file(a.out, "--out", create_parent=True)  # before the work
    kept = previous(a.out, a.targets) if a.keep else previous(Path("/nonexistent"), a.targets)
    t0 = time.time()
    rows, layers, cyc, mve_rows = [], {}, [], []
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
                if "mve" in res:  # a Helium core: the default build is the optimized one, DSP beside it
                    opt, dsp = res["mve"], res.get("dsp")
                    mve_rows.append({"model": name, "target": target, "macs": ref["manifest"]["macs"], "mve": opt,
                                     "dsp": dsp})
                macs = ref["manifest"]["macs"]
                if xdemo is None:
                    want = tflm_run(path, ref["x"]).reshape(len(ref["x"]), -1).astype(np.int32)
                    diff_vs = "TFLM"
                else:
                    want = ref["outputs"]
                    diff_vs = "reference firmware"
                best = opt or ref
                diff = max(int(np.abs(r["outputs"] - want).max()) for r in (best, fast, res.get("dsp"))
                           if r is not None)
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
                        layers[(name, target, label)] = (r["manifest"]["layers"], r["ticks"], r["per_tick"],
                                                        ref["ticks"], ref["per_tick"], r["cycles"])
                if "mve" in res and name in ("kws_ref_model", "pretrainedResnet_quant"):
                    r = res["mve"]
                    layers[(name, target, "Helium kernels, the default")] = (
                        r["manifest"]["layers"], r["ticks"], r["per_tick"], ref["ticks"], ref["per_tick"], None)

    def f(v, fmt="{:,}"):
        return "n/a" if v is None else fmt.format(v)

    lines = ["| model | target | MACs | instr. reference | instr/MAC | instr. optimized | instr/MAC | speed-up "
             "| instr. speed | instr/MAC | speed-up | flash ref. (B) | flash opt. (B) | flash speed (B) | RAM opt. (B) "
             "| RAM speed (B) | max diff (vs) |", "|" + "---|" * 17]

    def per_mac(v, macs):
        return f(v / macs if v else None, "{:.2f}")

    def ratio(a, b):
        return f(a / b if b else None, "{:.2f}x")
    main = []
    for r in rows:
        m = r["macs"]
        main.append(f"| {r['model']} | {r['target']} | {m:,} | {f(r['ref_instr'])} | {r['ref_instr'] / m:.2f} | "
                     f"{f(r['opt_instr'])} | {per_mac(r['opt_instr'], m)} | {ratio(r['ref_instr'], r['opt_instr'])} | "
                     f"{f(r['fast_instr'])} | {per_mac(r['fast_instr'], m)} | {ratio(r['ref_instr'], r['fast_instr'])} | "
                     f"{r['ref_flash']:,} | {f(r['opt_flash'])} | {f(r['fast_flash'])} | {r['ram']:,} | "
                     f"{f(r['fast_ram'])} | {r['diff']} ({r['diff_vs']}) |")
    lines += sorted(main + kept["main"], key=_row_key)
    lines += ["", "Optimized = the default `--kernels auto`: on cores with the DSP extension the SMLAD/SXTB16 "
              "kernels (`--kernels dsp`), on the Cortex-M55 the Helium (MVE) kernels (the DSP kernels for layers "
              "no Helium kernel takes), with the default `--optimize balanced`. Speed = `--kernels dsp "
              "--optimize speed`: the matrix-product layers' weights stored as int16 in flash (about twice their "
              "bytes), their requantization constants too; the same arena (n/a on the Cortex-M55: it changes only "
              "DSP layers). The Cortex-M3 has no DSP extension: reference kernels only. RAM = arena + static + "
              "stack peak (the reference build's where there is no optimized one). Max diff: the largest of the "
              "optimized builds' (on the M55 the Helium and the DSP build). The Cortex-M33 (QEMU mps2-an505, 50 "
              "instructions a SysTick tick) runs the same DSP kernels as the M4; the Cortex-M55 (mps3-an547, 31.25)."]
    if mve_rows or kept["mve"]:
        mv = []
        for r in mve_rows:
            m, h, d = r["macs"], r["mve"], r["dsp"]
            mv.append(f"| {r['model']} | {r['target']} | {m:,} | {h['instructions']:,.0f} | "
                      f"{h['instructions'] / m:.3f} | {f(d['instructions'] if d else None, '{:,.0f}')} | "
                      f"{per_mac(d['instructions'] if d else None, m)} | "
                      f"{ratio(d['instructions'] if d else None, h['instructions'])} | "
                      f"{h['manifest']['flash_bytes']:,} | {f(d['manifest']['flash_bytes'] if d else None)} | "
                      f"{h['manifest']['ram_bytes']:,} | {f(d['manifest']['ram_bytes'] if d else None)} |")
        lines += ["", "Helium (MVE) kernels vs the DSP kernels on the same core (`--kernels auto` vs `--kernels dsp`; "
                  "issue 21's goal: at most 0.4 instructions per MAC on ResNet-8 and DS-CNN, every layer and the "
                  "glue counted):", "",
                  "| model | target | MACs | instr. Helium | instr/MAC | instr. DSP | instr/MAC | speed-up | "
                  "flash Helium (B) | flash DSP (B) | RAM Helium (B) | RAM DSP (B) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += sorted(mv + kept["mve"], key=_row_key)
    cyc_lines = [f"| {c['model']} | {c['target']} | {c['mode']} | {c['macs']:,} | {c['instructions']:,} | "
                 f"{c['instructions'] / c['macs']:.2f} | {c['cycles']:,.0f} | "
                 f"{c['cycles'] / c['instructions']:.2f} | {c['cycles'] / c['macs']:.2f} | "
                 f"{f(c['cycles'] * 1e3 / L4R5ZI_HZ if c['target'] == 'cortex-m4' else None, '{:.1f}')} | "
                 f"{f(PUBLISHED_MS.get(c['model']) if c['target'] == 'cortex-m4' else None, '{:.1f}')} | "
                 f"{c['model_table']} |" for c in cyc]
    if cyc_lines or kept["cycles"]:
        lines += ["", "Estimated cycles of the optimized builds (`edgecomp run --cycles`: the core's timing table "
                  "over the instructions QEMU executed; estimates, not measurements, docs/cycles.md). On the "
                  "Cortex-M4 (the NUCLEO-L4R5ZI's core) also estimated ms at its 120 MHz, and the published MLPerf "
                  "Tiny v1.1 latency of X-CUBE-AI 8.1 on that board for comparison:", "",
                  "| model | target | mode | MACs | instructions | instr/MAC | est. cycles | cyc/instr | cyc/MAC "
                  "| est. ms at 120 MHz | X-CUBE-AI 8.1 on L4R5ZI (ms) | timing table |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += sorted(cyc_lines + kept["cycles"], key=_row_key)
    per_layer = []  # (sort key, heading, table lines)
    for heading, block in kept["layers"]:
        m = _LAYERS.match(heading)
        per_layer.append((_row_key(f"| {m[1]} | {m[2]} |"), heading, block))
    for (name, target, label), (mlayers, ticks, per_tick, rticks, rper, cyc_rep) in layers.items():
        block = []
        per_layer.append((_row_key(f"| {name} | {target} |"), f"Per layer, {name} on {target} ({label}):", block))
        block += ["| # | layer | op | MACs | instructions | instr/MAC | est. cycles | cyc/MAC | reference instr. "
                  "| speed-up | kernel |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        crow = cyc_rep.rows() if cyc_rep is not None else []
        carry = None  # a layer computed row by row inside the next one: its MACs and reference time join it
        for i, (lay, t, rt) in enumerate(zip(mlayers, ticks, rticks)):
            ins, rins = t * per_tick, rt * rper
            if lay.get("fused_into"):
                carry = (lay.get("macs", 0), rins)
                block.append(f"| {i} | {lay['name'][:40]} | {lay['op']} | {lay.get('macs', 0):,} | "
                             f"(in {lay['fused_into'][:40]}) | - | - | - | {rins:,.0f} | - | |")
                continue
            macs = lay.get("macs", 0) + (carry[0] if carry else 0)
            rall = rins + (carry[1] if carry else 0)
            ipm = f"{ins / macs:.{3 if ins < macs else 2}f}" if macs else "-"
            sp = f"{rall / ins:.2f}x" if ins else "-"
            note = f" (+ layer {i - 1})" if carry else ""
            est = crow[i]["cycles"] if i < len(crow) else None
            cpm = f"{est / macs:.2f}" if (est and macs) else "-"
            block.append(f"| {i} | {lay['name'][:40]}{note} | {lay['op']} | {macs:,} | {ins:,.0f} | {ipm} | "
                         f"{f(est, '{:,.0f}')} | {cpm} | {rall:,.0f} | {sp} | {lay.get('kernel', '')} |")
            carry = None
    for _, heading, block in sorted(per_layer, key=lambda t: t[0]):
        lines += ["", heading, ""] + block
    cmd = "python bench/mcu_speed.py" + ("" if a.targets == TARGETS else " --targets " + " ".join(a.targets)) \
        + (" --keep" if a.keep else "") + f" --inputs {a.inputs}"
    same = f"--targets {' '.join(a.targets)} --keep"  # an earlier rerun of these targets: replaced
    lines += [""] + [c for c in kept["commands"] if same not in c] + [f"Command: `{cmd}` ({time.time() - t0:.0f} s on this machine)"
                                        + (", the other targets' rows kept from the line above" if a.keep else "")]
    table = "\n".join(lines)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
