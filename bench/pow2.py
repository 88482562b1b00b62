"""Power-of-two (Q7) int8 scales: do they pay on Cortex-M0 or Cortex-M4?  Prints a markdown table.

    python bench/pow2.py [--results bench/results/pow2.md]

For the MNIST example CNN and the digits CNN (weights trained briefly: instruction counts and flash
do not depend on the values), the int8 PTQ model and its power-of-two rewrite
(``compress.fixedpoint.to_power_of_two``, nearest rounding) are compiled for cortex-m0 (QEMU
microbit) and cortex-m4 (mps2-an386) and run under QEMU (``-icount shift=0``: instructions).
The int8 kernels requantize with TFLite's Q31 multiplier and shift; a power-of-two scale gives the
multiplier 2^30 exactly, which is the same arithmetic, not a shift: on cortex-m4 the one-multiply
fast path of the DSP kernels needs a multiplier strictly above 2^30, so those layers take the
general path.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "pow2.md"))
    a = p.parse_args(argv)
    import torch

    from edgecomp import api
    from edgecomp.compress.distill import fit
    from edgecomp.compress.fixedpoint import to_power_of_two
    from edgecomp.compress.qat import export_qdq
    from edgecomp.compress.report import onnx_predict
    from edgecomp.compress.search import mnist_cnn
    from edgecomp.datasets import load_digits_split, load_mnist_split
    torch.set_num_threads(1)
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecomp-pow2-") as td:
        td = Path(td)
        for name, (xtr, ytr, xte, yte), make, epochs in (
                ("MNIST CNN", load_mnist_split(0), lambda: mnist_cnn(), 3),
                ("digits CNN", load_digits_split(0), lambda: mnist_cnn(0.5, 32, in_hw=8), 10)):
            torch.manual_seed(0)
            m = fit(make(), xtr, ytr, epochs=epochs, lr=3e-3, verbose=False)
            ex = torch.from_numpy(xte[:1])
            q = export_qdq(m, ex, xtr[:200], td / f"{name[:5]}.int8.onnx")
            p2 = Path(to_power_of_two(q, td / f"{name[:5]}.pow2.onnx", rounding="nearest")["path"])
            acc = {k: float((onnx_predict(f, xte).argmax(1) == yte).mean()) for k, f in (("int8", q), ("Q7", p2))}
            for target in ("cortex-m0", "cortex-m4"):
                res = {}
                for kind, f in (("int8", q), ("Q7", p2)):
                    b = td / f"{name[:5]}-{target}-{kind}"
                    man = api.compile_model(f, target, b)
                    run = api.run_bundle(b, xte[:1], progress=False).result
                    res[kind] = (man["flash_bytes"], run.instructions_per_inference)
                rows.append((name, target, acc, res))
                print(f"[pow2] {name} {target}: {res}", file=sys.stderr, flush=True)
    lines = ["| model | target | int8 flash | Q7 flash | int8 instructions | Q7 instructions | Q7 vs int8 | "
             "accuracy int8 / Q7 (ORT) |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, target, acc, res in rows:
        (f8, i8), (fq, iq) = res["int8"], res["Q7"]
        lines.append(f"| {name} | {target} | {f8:,} | {fq:,} | {i8:,} | {iq:,} | {(iq / i8 - 1) * 100:+.1f} % | "
                     f"{acc['int8'] * 100:.2f} % / {acc['Q7'] * 100:.2f} % |")
    md = (f"Command: `python bench/pow2.py` ({time.time() - t0:.0f} s). Instructions per inference under QEMU "
          "(-icount shift=0), flash from the linker.\n\n" + "\n".join(lines) + "\n")
    print(md)
    out = Path(a.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(md)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
