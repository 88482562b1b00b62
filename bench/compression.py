"""Compression benchmark on MNIST: prints a markdown table and writes bench/results/compression.md.

    python bench/compression.py [--target cortex-m4] [--quick] [--estimate]

Accuracy (ONNX Runtime, 1,000 held-out MNIST digits), params, MACs, flash, RAM and
instructions per inference (compiled for the target and run under QEMU through
edgecomp.api; estimated and marked "*" if the compiler cannot run) for: fp32, int8
PTQ, int8 QAT, structured pruning, unstructured pruning, low-rank, distillation,
Q7 power-of-two scales, int4, clustering, mixed precision (compiled with its packed layers), plus
the per-layer tables and the mixed-precision report.  The work is done by
examples/mnist_compress.py; this script only records it.  ``--search`` also runs the README's
command (``edgecomp compress --flash 32KiB --ram 8KiB --max-accuracy-drop 1``: the same defaults)
and appends its table.
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
    p.add_argument("--search", action="store_true",
                   help="also run `edgecomp compress --flash 32KiB --ram 8KiB --max-accuracy-drop 1` (about 10 min)")
    a = p.parse_args(argv)
    from edgecomp.outputs import check_output_file
    check_output_file(a.results, "--results", create_parent=True)  # before the work
    measure = "estimate" if a.estimate else "auto"
    with tempfile.TemporaryDirectory(prefix="edgecomp-bench-") as td:
        work = Path(a.work or td)
        res = _example().run(a.target, work, a.quick, measure=measure)
        md = res["markdown"]
        if a.search:
            import time

            from edgecomp.compress.search import run_compress
            t0 = time.time()
            run_compress(example="mnist", target=a.target, out_dir=work / "search", flash=32 * 1024, ram=8 * 1024,
                         max_accuracy_drop=1.0, quick=a.quick, measure=measure, verbose=False)
            search_md = (work / "search" / "pareto.md").read_text().replace("# Compression search", "## Budget search")
            sens = (work / "search" / "sensitivity.md").read_text().replace("# Per-layer pruning sensitivity",
                                                                             "### Per-layer pruning sensitivity")
            md += (f"\n{search_md.splitlines()[0]}\n\nCommand: `edgecomp compress --target {a.target} --flash 32KiB "
                   f"--ram 8KiB --max-accuracy-drop 1{' --quick' if a.quick else ''}` ({time.time() - t0:.0f} s, "
                   "2 worker processes; validation: 800 digits split off the 4,000 training digits, which select; "
                   "test: the 1,000 held-out digits, run on the chosen bundle's firmware under QEMU)\n"
                   + "\n".join(search_md.splitlines()[1:]) + "\n\n" + sens)
    cmd = "python bench/compression.py" + (" --estimate" if a.estimate else "") + (" --search" if a.search else "")
    md = md.replace("`python bench/compression.py", f"`{cmd}", 1)
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
