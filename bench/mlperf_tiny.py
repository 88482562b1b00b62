"""MLPerf Tiny int8 models: edgecomp vs TensorFlow Lite Micro, measured side by side.

    python bench/mlperf_tiny.py [--models DIR] [--inputs 100] [--qemu-inputs 5] [--out bench/results/mlperf_tiny.md]

For each model, one row: TFLM arena bytes (measured now through the `tflite-micro`
package), edgecomp total RAM on cortex-m4 (arena + other static RAM + stack peak
measured under QEMU), the ratio, flash (`arm-none-eabi-size`, -Os), instructions
per inference under QEMU `-icount shift=0`, and the largest output difference from
TFLM over N random inputs (host build) and over a few inputs in QEMU.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ["ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite"]


def default_models_dir() -> Path:
    """EDGECOMP_MLPERF_DIR, else ../shared/benchmarks/mlperf_tiny beside the repository (as the tests)."""
    return Path(os.environ.get("EDGECOMP_MLPERF_DIR", ROOT.parent / "shared" / "benchmarks" / "mlperf_tiny"))


def random_inputs(man: dict, n: int, seed: int = 0) -> np.ndarray:
    io = man["inputs"][0]
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=[n] + list(io["shape"][1:])).astype(np.int8)


def measure(model: Path, n_inputs: int, n_qemu: int, work: Path) -> dict:
    from edgecomp import api
    from edgecomp.reference import tflm_arena_bytes, tflm_run

    from edgecomp.frontends.tflite import load_tflite

    row: dict = {"model": model.stem}
    row["tflm_arena"] = tflm_arena_bytes(model)
    row["weight_bytes"] = sum(t.nbytes for t in load_tflite(model).constants())  # weights + biases
    m4 = api.compile_model(model, "cortex-m4", work / f"{model.stem}-m4")
    host = api.compile_model(model, "host", work / f"{model.stem}-host")
    x = random_inputs(m4, n_inputs)
    ref = tflm_run(model, x).reshape(len(x), -1).astype(np.int32)
    got = api.run_bundle(work / f"{model.stem}-host", x, emulate=False).outputs.reshape(len(x), -1).astype(np.int32)
    row["max_diff_host"] = int(np.abs(got - ref).max())
    pq = api.run_bundle(work / f"{model.stem}-m4", x[:n_qemu], emulate=True)
    row["max_diff_qemu"] = int(np.abs(pq.outputs.reshape(n_qemu, -1).astype(np.int32) - ref[:n_qemu]).max())
    ram = m4.get("ram", {})
    row.update(ram_total=m4["ram_bytes"], arena=ram.get("arena_bytes"), static=ram.get("static_bytes"),
               stack=ram.get("stack_peak_bytes"), flash=m4["flash_bytes"],
               macs=m4.get("macs"), instructions=pq.result.instructions_per_inference)
    row["ratio"] = row["ram_total"] / row["tflm_arena"]
    row["file_bytes"] = model.stat().st_size
    import re
    wc = (work / f"{model.stem}-m4" / "weights.c").read_text()
    row["requant_bytes"] = (4 * sum(int(n) for n in re.findall(r"const int32_t \w+_multiplier\[(\d+)\]", wc))
                            + sum(int(n) for n in re.findall(r"const int8_t \w+_shift\[(\d+)\]", wc)))
    return row


def render(rows: list[dict], cmd: str) -> str:
    head = ("| model | TFLM arena (B) | edgecomp RAM (B) = arena + static + stack | ratio | flash (B) | weights (B) "
            "| flash - weights (B) | of which requant. tables | .tflite file (B) | MACs | instructions / inference | instr / MAC | max diff vs TFLM (host, 100) "
            "| max diff (QEMU) |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        extra = (r["flash"] - r["weight_bytes"]) if r.get("weight_bytes") else 0
        ipm = f"{r['instructions'] / r['macs']:.2f}" if r.get("instructions") and r.get("macs") else "n/a"
        lines.append(f"| {r['model']} | {r['tflm_arena']:,} | {r['ram_total']:,} = {r['arena']:,} + {r['static']:,} + "
                     f"{r['stack']:,} | {r['ratio']:.3f} | {r['flash']:,} | {r.get('weight_bytes') or 0:,} | {extra:,} "
                     f"| {r.get('requant_bytes', 0):,} | {r.get('file_bytes', 0):,} | {r.get('macs') or 0:,} | {r['instructions'] or 0:,} | {ipm} | {r['max_diff_host']} "
                     f"| {r['max_diff_qemu']} |")
    geo = math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows)) if rows else float("nan")
    lines.append("")
    lines.append(f"Geometric mean of the RAM ratios: **{geo:.3f}** (goal <= 0.45; each <= 0.6).")
    lines.append("Flash is the whole firmware (`.text + .rodata + .ARM.exidx + .data` from `arm-none-eabi-size`, "
                 "-Os): model code, kernels, weights, requantization tables, harness and C library; "
                 "'weights' is the model's weight and bias bytes. Goal: flash - weights <= 16,384. "
                 "'requant. tables' are the per-output-channel Q31 multipliers (4 B) and shifts (1 B) kept in "
                 "flash (TFLM computes them into its arena at start-up from the float scales in the .tflite "
                 "file, whose size is given for comparison: TFLM needs that file in flash plus its library). "
                 "vww's flash is below its weights: 42 % of its output channels are pruned (all-zero "
                 "weights), and edgecomp stores and computes only the others (their constant outputs "
                 "come from one row per layer).")
    lines.append("")
    lines.append(f"Command: `{cmd}`")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=default_models_dir())
    p.add_argument("--inputs", type=int, default=100)
    p.add_argument("--qemu-inputs", type=int, default=5)
    p.add_argument("--only", nargs="*", help="model file names to run (default: all four)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mlperf_tiny.md")
    a = p.parse_args(argv)
    from edgecomp.outputs import check_output_file
    check_output_file(a.out, "--out", create_parent=True)  # before the work
    rows = []
    with tempfile.TemporaryDirectory(prefix="ec-bench-") as td:
        for name in a.only or MODELS:
            t0 = time.time()
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(measure(a.models / name, a.inputs, a.qemu_inputs, Path(td)))
            print(f"    done in {time.time() - t0:.0f} s", file=sys.stderr)
    cmd = "python bench/mlperf_tiny.py" + (f" --inputs {a.inputs}" if a.inputs != 100 else "")
    table = render(rows, cmd)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
