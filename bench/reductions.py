"""Reductions and the new convolution variants on Cortex-M4, counted under QEMU.

    python bench/reductions.py [--out bench/results/reductions.md]

The int8 MEAN over the pixels of an NHWC tensor (Keras' GlobalAveragePooling2D, ONNX
GlobalAveragePool with two scales, ReduceMean over H, W) as a one-layer TFLite model, compiled for
cortex-m4 with the reference kernels (`ec_mean_s8`) and with the DSP kernels (`ec_mean_s8_dsp`:
4 channels per load, SXTAB16): instructions per input element summed, from the probe's per-layer
count under `qemu-system-arm -icount shift=0` (SysTick ticks x instructions per tick); every output
equal to TensorFlow Lite Micro's.  Then, for scale, the plain-C kernels of the other new layers
(no optimized variant yet): instructions per MAC of a grouped convolution and a transpose
convolution, per element of a softmax along a strided axis.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MEAN_SHAPES = [(3, 3, 576), (7, 7, 256), (12, 12, 96), (24, 24, 32), (48, 48, 16)]


def _q(name, shape, scale, zp, dtype="int8", **kw):
    return dict(name=name, shape=list(shape), dtype=dtype, scale=[scale], zero_point=[zp], **kw)


def mean_model(hwc) -> bytes:
    from conftest import build_tflite
    t = [_q("x", (1,) + hwc, 0.05, 3), dict(name="axes", shape=[2], dtype="int32", data=np.array([1, 2], np.int32)),
         _q("y", (1, 1, 1, hwc[2]), 0.02, -5)]
    return build_tflite(t, [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=("ReducerOptions", {"KeepDims": True}))],
                        [0], [2])


def layer_instructions(model: bytes, kernels: str, work: Path, x: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Instructions of each layer of the first inference on cortex-m4 under QEMU, and the outputs."""
    from edgecomp import api
    (work / "m.tflite").write_bytes(model)
    api.compile_model(work / "m.tflite", "cortex-m4", work / kernels, options={"kernels": kernels})
    res = api.run_bundle(work / kernels, x, emulate=True, progress=False)
    r = res.result
    per_tick = r.instructions_per_inference / r.total_ticks
    return [round(t * per_tick) for t in r.layer_ticks], res.outputs


def tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(model, arena_size=1 << 21)
    outs = []
    for s in x:
        interp.set_input(s[None], 0)
        interp.invoke()
        outs.append(interp.get_output(0).copy())
    return np.concatenate(outs)


def mean_table(work: Path) -> list[str]:
    rows = ["| input (H x W x C) | elements | reference: instructions | per element | DSP: instructions | per element "
            "| equal to TFLM |",
            "|---|---|---|---|---|---|---|"]
    for hwc in MEAN_SHAPES:
        m = mean_model(hwc)
        x = np.random.default_rng(0).integers(-128, 128, (2,) + hwc).astype(np.int8)
        want = tflm(m, x)
        n = int(np.prod(hwc))
        cells, same = [], True
        for kernels in ("reference", "dsp"):
            d = work / f"{'x'.join(map(str, hwc))}"
            d.mkdir(exist_ok=True)
            ins, out = layer_instructions(m, kernels, d, x)
            same &= bool(np.array_equal(out.reshape(want.shape), want))
            cells += [f"{ins[0]:,}", f"{ins[0] / n:.2f}"]
        rows.append(f"| {' x '.join(map(str, hwc))} | {n:,} | " + " | ".join(cells) + f" | {'yes' if same else 'NO'} |")
        print(rows[-1], flush=True)
    return rows


def other_table(work: Path) -> list[str]:
    """The plain-C kernels of the other new layers, on cortex-m4 (DSP kernels on: none applies)."""
    from test_ops_conv_variants import GROUPED, TCONVS, grouped_tflite, tconv_tflite
    from edgecomp import ir
    from edgecomp.frontends.tflite import load_tflite
    rows = ["| layer | kernel | work | instructions | per unit |", "|---|---|---|---|---|"]
    for label, m, kernel in [("grouped 3x3 conv, 6 -> 6 channels, 3 groups, stride 2, 5x6", grouped_tflite(GROUPED[1], "int8"),
                              "ec_conv2d_grouped_s8"),
                             ("transpose conv 3x3 stride 2, 4x5x3 -> 8x10x6", tconv_tflite(TCONVS[0], "int8"),
                              "ec_transpose_conv2d_s8")]:
        g = load_tflite(m)
        b = g.tensors[g.inputs[0]].shape[0]  # one inference: the model's batch of rows
        x = np.random.default_rng(1).integers(-128, 128, (b,) + g.tensors[g.inputs[0]].shape[1:]).astype(np.int8)
        d = work / kernel
        d.mkdir()
        ins, out = layer_instructions(m, "dsp", d, x)
        macs = ir.macs(g, g.nodes[0])
        rows.append(f"| {label} | `{kernel}` | {macs:,} MACs | {ins[0]:,} | {ins[0] / macs:.1f} per MAC |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reductions.md"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        (work / "mean").mkdir()
        (work / "other").mkdir()
        mean = mean_table(work / "mean")
        other = other_table(work / "other")
    text = ["Command: `python bench/reductions.py` (cortex-m4, QEMU mps2-an386, `-icount shift=0`; instructions",
            "per layer = the probe's SysTick ticks x 40).", "",
            "The int8 MEAN over the pixels (`ec_mean_s8` reference, `ec_mean_s8_dsp` with SXTAB16), two random",
            "inputs each, outputs equal to TensorFlow Lite Micro's:", ""] + mean + \
           ["", "Plain-C kernels of the other new layers (no optimized variant):", ""] + other + [""]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
