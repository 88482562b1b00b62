"""Helium (MVE) kernels on a Cortex-M55: instructions per MAC, layer by layer, under QEMU.

    python bench/mve_kernels.py [--out bench/results/mve_kernels.md]

Every conv2d, depthwise, fully connected and pooling layer of the four MLPerf Tiny int8 models, with
its own weights and requantization and a random input, runs through the reference kernel
(ec_kernels.c) and the Helium kernel (kernels/mve/ec_kernels_mve.c) in one firmware built for
cortex-m55 and run under QEMU mps3-an547 -icount shift=0 (tests/mve_harness.py): instructions are
SysTick ticks x 31.25, outputs compared byte for byte.  Pools count window taps as "MACs".  A
depthwise layer runs the kernel the code generator picks for it (the 3x3 fast path,
ec_depthwise_conv2d_s8_mve3x3, where predicates.mve_dw3x3_ok holds).  The per-model totals add the
layers' kernel counts (without softmax, reshapes, row fusion and the harness); whole models as
compiled, glue included: bench/mcu_speed.py (cortex-m55 rows).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MLPERF = ["ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"]


def main(argv=None) -> int:
    import mve_harness as h

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "benchmarks" / "mlperf_tiny")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mve_kernels.md")
    a = p.parse_args(argv)
    t0 = time.time()
    lines = ["| model | layer | kernel | shape | MACs | Helium instr. | instr/MAC | reference instr/MAC | speed-up "
             "| bit-exact |", "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    totals = []
    with tempfile.TemporaryDirectory(prefix="ec-mve-") as td:
        for model in MLPERF:
            print(f"... {model}", file=sys.stderr, flush=True)
            cases = h.model_cases(a.models / f"{model}.tflite", np.random.default_rng(5), model, inplace=True,
                                  distinct=False)
            res = h.run_in_batches(cases, Path(td) / model)
            tot = {"macs": 0, "mve": 0.0, "ref": 0.0, "exact": True}
            for c, r in zip(cases, res):
                f = c.fields
                if c.op in ("conv", "depthwise"):
                    shape = (f"{f['in_h']}x{f['in_w']}x{f['in_c']} -> {f['out_h']}x{f['out_w']}x{f['out_c']}, "
                             f"{f['kernel_h']}x{f['kernel_w']} /{f['stride_h']}" + (" + residual" if c.residual else ""))
                elif c.op == "fc":
                    shape = f"{f['in_features']} -> {f['out_features']}"
                else:
                    shape = f"{f['in_h']}x{f['in_w']}x{f['channels']}, {f['kernel_h']}x{f['kernel_w']}"
                exact = r.mismatches == 0 and r.guard == 0
                kind = c.op + (" 3x3 fast path" if c.variant == "3x3" else "")
                lines.append(f"| {model} | {r.name[len(model) + 1:]} | {kind} | {shape} | {c.macs:,} | "
                             f"{r.instructions:,.0f} | {r.instructions / c.macs:.3f} | "
                             f"{r.ref_instructions / c.macs:.2f} | {r.ref_instructions / r.instructions:.1f}x | "
                             f"{'yes' if exact else 'NO'} |")
                if c.op not in ("maxpool", "avgpool"):
                    tot["macs"] += c.macs
                tot["mve"] += r.instructions
                tot["ref"] += r.ref_instructions
                tot["exact"] &= exact
            totals.append((model, tot))
    lines += ["", "Per model, the layers above added up (multiply-accumulate MACs only; pools' taps not counted):", "",
              "| model | MACs | Helium kernels, instructions | per MAC | reference kernels, per MAC | all bit-exact |",
              "|---|---:|---:|---:|---:|---|"]
    for model, t in totals:
        lines.append(f"| {model} | {t['macs']:,} | {t['mve']:,.0f} | {t['mve'] / t['macs']:.3f} | "
                     f"{t['ref'] / t['macs']:.2f} | {'yes' if t['exact'] else 'NO'} |")
    lines += ["", f"Command: `python bench/mve_kernels.py` ({time.time() - t0:.0f} s on this machine)"]
    table = "\n".join(lines)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
