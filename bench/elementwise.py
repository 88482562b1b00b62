"""Elementwise layers on a Cortex-M4 under QEMU: instructions per output element.

    python bench/elementwise.py [--hw 24] [--channels 32] [--out bench/results/elementwise.md]

One int8 TFLite model of a MobileNetV3 block's elementwise layers, written with the repository's
TFLite builder (tests/conftest.py): HARD_SWISH on a [1, H, W, C] map, the squeeze-excite branch
(global AVERAGE_POOL_2D, LOGISTIC on [1, 1, 1, C]) and its broadcast MUL [1, H, W, C] * [1, 1, 1, C],
then LOGISTIC on the whole map.  Compiled for cortex-m4 with the default (DSP) kernels and with
``--kernels reference``, run under QEMU ``-icount shift=0`` (instructions = SysTick ticks x 40),
every output compared with TensorFlow Lite Micro (bit-exact).  The goal (issue 16): at most 10
instructions per output element for the SE Mul, HardSwish and Sigmoid.
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

GOAL = 10.0


def se_model(hw: int, c: int) -> bytes:
    from conftest import build_tflite

    def q(name, shape, s, z):
        return dict(name=name, shape=list(shape), dtype="int8", scale=[s], zero_point=[z])
    big, small = (1, hw, hw, c), (1, 1, 1, c)
    tensors = [q("x", big, 0.05, -3), q("hswish", big, 0.035, -40), q("pooled", small, 0.035, -40),
               q("scale", small, 1 / 256, -128), q("excited", big, 0.03, -35), q("y", big, 1 / 256, -128)]
    pool = ("Pool2DOptions", {"Padding": 1, "StrideH": 1, "StrideW": 1, "FilterHeight": hw, "FilterWidth": hw,
                              "FusedActivationFunction": 0})
    ops = [dict(op="HARD_SWISH", inputs=[0], outputs=[1]),
           dict(op="AVERAGE_POOL_2D", inputs=[1], outputs=[2], options=pool),
           dict(op="LOGISTIC", inputs=[2], outputs=[3]),
           dict(op="MUL", inputs=[1, 3], outputs=[4], options=("MulOptions", {"FusedActivationFunction": 0})),
           dict(op="LOGISTIC", inputs=[4], outputs=[5])]
    return build_tflite(tensors, ops, [0], [5])


def main(argv=None) -> int:
    from edgecomp import api
    from edgecomp.reference import tflm_run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hw", type=int, default=24)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "elementwise.md")
    a = p.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(0)
    labels = ["HardSwish", "SE global average pool (not elementwise)", "SE Sigmoid on the [1,1,1,C] vector",
              "SE Mul [1,H,W,C] * [1,1,1,C]", "Sigmoid"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ec-elementwise-") as td:
        td = Path(td)
        model = td / "se.tflite"
        model.write_bytes(se_model(a.hw, a.channels))
        x = rng.integers(-128, 128, (2, a.hw, a.hw, a.channels), dtype=np.int8)
        want = tflm_run(model, x)
        results = {}
        for kernels in ("dsp", "reference"):
            man = api.compile_model(model, "cortex-m4", td / kernels, options={"kernels": kernels})
            pred = api.run_bundle(td / kernels, x, emulate=True, progress=False)
            exact = np.array_equal(pred.outputs.reshape(want.shape), want)
            per = 40  # instructions per SysTick tick (mps2-an386 under -icount shift=0)
            results[kernels] = [(lay, t * per, exact) for lay, t in zip(man["layers"], pred.result.layer_ticks)]
        for label, (lay, ins, exact), (_, ref_ins, ref_exact) in zip(labels, results["dsp"], results["reference"]):
            n = int(np.prod(lay["out_shape"]))
            rows.append((label, lay["op"], lay["kernel"], lay["out_shape"], n, ins, ins / n, ref_ins / n,
                         exact and ref_exact))
    lines = [f"Elementwise layers, int8, cortex-m4 under QEMU (`python bench/elementwise.py --hw {a.hw} --channels "
             f"{a.channels}`): instructions per output element, default (DSP) kernels and `--kernels reference`, "
             f"outputs bit-exact with TFLite Micro; goal <= {GOAL:g} for SE Mul, HardSwish, Sigmoid.", "",
             "| layer | op | kernel | output | elements | instructions | per element | reference per element "
             "| bit-exact |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for label, op, kern, shape, n, ins, per, ref, exact in rows:
        lines.append(f"| {label} | {op} | {kern} | {'x'.join(map(str, shape))} | {n:,} | {ins:,} | {per:.2f} | "
                     f"{ref:.2f} | {'yes' if exact else 'NO'} |")
    lines += ["", f"({time.time() - t0:.0f} s)"]
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    big = [r for r in rows if r[4] > a.channels and r[1] in ("lut", "mul")]
    return 0 if all(r[6] <= GOAL and r[8] for r in big) else 1


if __name__ == "__main__":
    sys.exit(main())
