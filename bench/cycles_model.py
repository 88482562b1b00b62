"""The cycle model itself: its microbenchmarks, its sensitivity, the hot loops it finds, and how its
estimates compare with published measurements on the NUCLEO-L4R5ZI.

    python bench/cycles_model.py [--out bench/results/cycles.md]

1. The microbenchmarks of tests/data/cycles/microbench.S traced under QEMU and priced with every
   table (tests/test_cycles.py checks them against the TRM counts worked out by hand).
2. DS-CNN and ResNet-8 (MLPerf Tiny) on cortex-m4, default and `--optimize speed`: estimated cycles
   with the TRM's range for the branch refill P (1, 2 = the table, 3) and without the address
   stall, and the bytes of weights the matrix-product loops read from flash (the model cannot see
   flash wait states behind the ART accelerator: a bound of what they could add).
3. The blocks that take the most estimated cycles, per model and mode (where kernel work should go).
4. The estimates at the L4R5ZI's 120 MHz beside X-CUBE-AI 8.1's published MLPerf Tiny v1.1 latency.
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {"kws_ref_model": "DS-CNN", "pretrainedResnet_quant": "ResNet-8"}
PUBLISHED_MS = {"kws_ref_model": 62.9, "pretrainedResnet_quant": 214.0}  # X-CUBE-AI 8.1, L4R5ZI, 120 MHz
CLOCK = 120e6
WAIT_STATES = 5   # STM32L4R5 flash at 120 MHz (targets/nucleo-l4r5zi.toml)
FLASH_READ = 8    # bytes per flash read (64-bit)


def variant(model, **rules):
    return dataclasses.replace(model, rules=dict(model.rules, **rules))


def microbench(work: Path) -> list[str]:
    from edgecomp.cycles.account import SegmentStats, price
    from edgecomp.cycles.model import load_model
    from edgecomp.cycles.trace import collect
    from edgecomp.targets import load_target

    data = ROOT / "tests" / "data" / "cycles"
    elf = work / "microbench.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-T", str(data / "microbench.ld"),
                    str(data / "microbench.S"), "-o", str(elf)], check=True)
    trace = collect(elf, load_target("cortex-m4"), work)
    cores = ["cortex-m4", "cortex-m3", "cortex-m33", "cortex-m0", "cortex-m0plus", "cortex-m7", "cortex-m55"]
    per = {}
    for core in cores:
        tot = SegmentStats()
        for s in price(trace, load_model(core)):
            tot.add(s)
        per[core] = {k: v for k, v in tot.functions.items() if k.startswith("bench_")}
    names = list(per["cortex-m4"])
    lines = ["| benchmark (100 iterations) | instructions | " + " | ".join(cores) + " |",
             "|---|---:|" + "---:|" * len(cores)]
    for n in names:
        lines.append(f"| {n} | {int(per['cortex-m4'][n][0]):,} | "
                     + " | ".join(f"{per[c][n][1]:,.0f}" for c in cores) + " |")
    return lines


def flash_weight_bytes(trace, segs, speed: bool) -> int:
    """Bytes the matrix-product inner loops read through the weight pointer from flash: int8 packed
    weights (LDRD through r12, `ec_gemm_2x2`) always; int16 weights only with --optimize speed (the
    default widens them into the arena, RAM): single LDRs through lr in the 2x4 blocks
    (`ec_gemm16_4x*`), LDMs through r12 in the 2x2 blocks of an odd last pair (`ec_gemm16_2x2*`).
    Kernel knowledge, for the bound."""
    total = 0
    for seg in segs:
        for bid, (runs, _, _) in seg.blocks.items():
            b = trace.blocks[bid]
            for ins in b.insns:
                if b.func.startswith("ec_gemm16_4x") and ins.cls == "load" and 14 in ins.addr_regs and speed:
                    total += int(runs) * 4
                if 12 not in ins.addr_regs:
                    continue
                if b.func.startswith("ec_gemm16_2x2") and ins.cls == "load_multiple" and speed:
                    total += int(runs) * 4 * ins.nregs
                elif b.func == "ec_gemm_2x2" and ins.cls == "load_double":
                    total += int(runs) * 8
    return total


def model_runs(work: Path) -> tuple[list[str], list[str]]:
    from edgecomp import api
    from edgecomp.backends.cortex_m import build
    from edgecomp.cycles.account import SegmentStats, price
    from edgecomp.cycles.model import load_model
    from edgecomp.cycles.trace import collect
    from edgecomp.targets import load_target

    m4 = load_model("cortex-m4")
    sens = ["| model | mode | MACs | instructions | est. cycles (table: P = 2) | P = 1 | P = 3 | no address stall "
            "| cyc/MAC | weights read from flash (B) | + flash wait states, worst case | est. ms at 120 MHz "
            "| with worst-case flash | X-CUBE-AI 8.1 (ms) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    hot = []
    for stem, label in MODELS.items():
        for mode in ("balanced", "speed"):
            out = work / f"{stem}-{mode}"
            man = api.compile_model(ROOT.parent / "shared" / "benchmarks" / "mlperf_tiny" / f"{stem}.tflite",
                                    "cortex-m4", out, options={"kernels": "dsp", "optimize": mode})
            built = build(out, load_target("cortex-m4"))
            x = np.random.default_rng(3).integers(-128, 128, size=[1] + man["inputs"][0]["shape"][1:]).astype(np.int8)
            run_dir = work / f"run-{stem}-{mode}"
            run_dir.mkdir()
            x.tofile(run_dir / "ec_input.bin")
            n = len(man["layers"])
            trace = collect(built.elf, load_target("cortex-m4"), run_dir, stop_after=n + 3)

            def total(model):
                t = SegmentStats()
                for s in price(trace, model)[1:n + 3]:
                    t.add(s)
                return t

            base = total(m4)
            p1 = total(dataclasses.replace(m4, cycles=dict(m4.cycles, branch=2, call=2, branch_indirect=2,
                                                           table_branch=3), rules=dict(m4.rules, pc_refill=1,
                                                                                       pop_pc_extra=1)))
            p3 = total(dataclasses.replace(m4, cycles=dict(m4.cycles, branch=4, call=4, branch_indirect=4,
                                                           table_branch=5), rules=dict(m4.rules, pc_refill=3,
                                                                                       pop_pc_extra=3)))
            nostall = total(variant(m4, address_stall=0))
            fb = flash_weight_bytes(trace, [base], mode == "speed")
            worst = fb / FLASH_READ * WAIT_STATES
            macs = man["macs"]
            pub = PUBLISHED_MS[stem]
            sens.append(f"| {label} | {'default' if mode == 'balanced' else 'speed'} | {macs:,} | {base.instructions:,} | "
                        f"{base.cycles:,.0f} | {p1.cycles:,.0f} | {p3.cycles:,.0f} | {nostall.cycles:,.0f} | "
                        f"{base.cycles / macs:.2f} | {fb:,} | {worst:,.0f} | {base.cycles * 1e3 / CLOCK:.1f} | "
                        f"{(base.cycles + worst) * 1e3 / CLOCK:.1f} | {pub:.1f} |")
            hot += ["", f"{label}, {'--optimize speed' if mode == 'speed' else 'default'}: the costliest blocks "
                    f"({base.cycles:,.0f} estimated cycles in all)", "",
                    "| function | block | runs | instr/run | est. cycles/run | est. cycles | share | "
                    "instructions (first 12) |", "|---|---|---:|---:|---:|---:|---:|---|"]
            for h in base.hot_blocks(trace.blocks, top=10):
                code = "; ".join(h["code"][:12]) + (" ..." if len(h["code"]) > 12 else "")
                hot.append(f"| {h['function']} | {h['pc']} | {h['runs']:,} | {h['instructions'] / h['runs']:.0f} | "
                           f"{h['cycles_per_run']:.1f} | {h['cycles']:,.0f} | {h['share_pct']:.1f} % | "
                           f"`{code}` |")
    return sens, hot


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cycles.md")
    a = p.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ec-cycles-") as td:
        work = Path(td)
        mb = microbench(work)
        sens, hot = model_runs(work)
    lines = ["Estimated cycles (`edgecomp run --cycles`) are the core's timing table (targets/timing/<core>.toml, "
             "with its TRM sources) applied to the instructions QEMU executed: estimates, not measurements "
             "(docs/cycles.md says what the model cannot see).", "",
             "Microbenchmarks (tests/data/cycles/microbench.S), estimated cycles per core. tests/test_cycles.py "
             "checks the Cortex-M4, M3 and M0+ columns against the counts worked out by hand from their TRMs "
             "(exact), and the M7 column against its documented dual-issue rule:", "", *mb, "",
             "DS-CNN and ResNet-8 on cortex-m4: the estimate under the TRM's range for the branch refill P and "
             "without the address-dependency stall; the int8/int16 weights the matrix-product loops read from "
             "flash, and what they would add if every 64-bit flash read waited the L4R5's 5 wait states (the "
             "ART accelerator's 256-byte data cache does not hold a layer's weights, so this is the bound, not "
             "the expectation); estimated ms at 120 MHz beside X-CUBE-AI 8.1's published MLPerf Tiny v1.1 "
             "latency on the NUCLEO-L4R5ZI:", "", *sens]
    lines += ["", "Where the estimated cycles go (the basis of docs/cycles.md, \"Hot loops\"):", *hot]
    lines += ["", f"Command: `python bench/cycles_model.py` ({time.time() - t0:.0f} s on this machine)"]
    table = "\n".join(lines)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
