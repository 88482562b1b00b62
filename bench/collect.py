"""Assemble BENCHMARKS.md from the tables the benchmark scripts wrote into bench/results/.

    python bench/collect.py          # after running the benchmarks you want to refresh
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = [
    ("mlperf_tiny.md", "MLPerf Tiny int8 on Cortex-M4: edgecomp vs TensorFlow Lite Micro (issue 3)"),
    ("mcu_speed.md", "Cortex-M speed: reference vs optimized kernels (issues 4, 21), instructions and estimated "
                     "cycles (issue 22)"),
    ("cycles.md", "Estimated cycles: the timing model, its sensitivity and the hot loops (issue 22)"),
    ("mve_kernels.md", "Helium (MVE) kernels on the Cortex-M55, layer by layer against the reference kernels (issue 21)"),
    ("coverage.md", "Operator coverage: edge architectures in int8, flash / RAM / instructions on Cortex-M4 (issue 16)"),
    ("elementwise.md", "Elementwise layers of modern blocks on Cortex-M4: SE Mul, HardSwish, Sigmoid (issue 16)"),
    ("reductions.md", "Reductions and convolution variants on Cortex-M4: MEAN, grouped and transpose conv (issue 16)"),
    ("sequence.md", "Sequence models on Cortex-M4: LSTM, GRU, streaming (issue 17)"),
    ("conv1d.md", "1-D convolutions on the 2-D kernels: 1-D DS-CNN vs 2-D 1xk (issue 17)"),
    ("demo_model.md", "The digits demo model on every emulated Cortex-M (issue 2)"),
    ("compression.md", "Compression on MNIST (issues 6, 19)"),
    ("compress_width.md", "At 85 % fewer parameters: the search vs a network of that size distilled from scratch", 3),
    ("pow2.md", "Power-of-two (Q7) int8 scales on cortex-m0 and cortex-m4", 3),
    ("rpi.md", "Raspberry Pi bundles (issue 5)"),
]


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    qemu = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return (f"{cpu or platform.processor()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"{gcc}; {qemu}")


def main() -> None:
    parts = ["# Benchmarks", "",
             f"Latest tables, collected {datetime.date.today().isoformat()} on: {machine()}.",
             "Instruction counts come from QEMU `-icount shift=0` (deterministic), sizes from "
             "`arm-none-eabi-size`; wall-clock timings on this shared machine are noisy, so only ratios "
             "measured side by side in one run are reported. Each section names the command that "
             "regenerates it; `python bench/collect.py` rebuilds this file from `bench/results/`.", ""]
    for fname, title, *level in ORDER:  # (level 3: a subsection of the section before)
        p = ROOT / "bench" / "results" / fname
        if not p.is_file():
            continue
        body = p.read_text().strip().splitlines()
        if body and body[0].startswith("# "):
            body = body[1:]
        hashes = "#" * (level[0] if level else 2)
        parts += [f"{hashes} {title}", "", *[(hashes[1:] + l if l.startswith("## ") else l) for l in body], ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts).rstrip() + "\n")
    print((ROOT / "BENCHMARKS.md").read_text())


if __name__ == "__main__":
    main()
