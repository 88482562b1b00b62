"""Compression benchmark on MNIST: prints a markdown table and writes bench/results/compression.md.

    python bench/compression.py [--target cortex-m4] [--quick] [--estimate]

Accuracy (ONNX Runtime, 1,000 held-out MNIST digits), params, MACs, flash, RAM and
instructions per inference (compiled for the target and run under QEMU through
edgecomp.api; estimated and marked "*" if the compiler cannot run) for: fp32, int8
PTQ, int8 QAT, structured pruning, unstructured pruning, low-rank, distillation,
Q7 power-of-two scales, plus the per-layer tables and the mixed-precision report.
The work is done by examples/mnist_compress.py; this script only records it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location("mnist_compress", ROOT / "examples" / "mnist_compress.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="compression benchmark (MNIST)")
    p.add_argument("--target", default="cortex-m4")
    p.add_argument("--quick", action="store_true", help="fewer epochs (about 40 s)")
    p.add_argument("--estimate", action="store_true", help="estimate flash/RAM/instructions instead of compiling")
    p.add_argument("--work", default=None, help="folder for the models and bundles (default: a temp folder)")
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "compression.md"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgecomp-bench-") as td:
        res = _example().run(a.target, a.work or td, a.quick, measure="estimate" if a.estimate else "auto")
    md = res["markdown"]
    if a.estimate:
        md = md.replace("`python bench/compression.py --target", "`python bench/compression.py --estimate --target")
    print(md)
    out = Path(a.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(md)
    os.replace(tmp, out)
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
