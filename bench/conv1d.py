"""A 1-D DS-CNN against the same network written with 2-D 1xk convolutions, on a Cortex-M4.

    python bench/conv1d.py [--target cortex-m4] [--inputs 8] [--out bench/results/conv1d.md]

The network (keyword-spotting sized: 10 features x 49 frames, 12 classes): Conv1d(10, 64, 5,
stride 2) + BN + ReLU, four depthwise-separable blocks (depthwise Conv1d(64, 64, 3) + BN + ReLU,
pointwise Conv1d(64, 64, 1) + BN + ReLU), AdaptiveAvgPool1d(1), Linear(64, 12); random weights.
The 2-D twin has the same weights as Conv2d (1, k) on an [N, 10, 1, 49] input.  Both are
quantized by ONNX Runtime on the same 64 calibration sequences and compiled with edgecomp.

Measured: instructions per inference under QEMU ``-icount shift=0`` (SysTick), flash of the
model's part of the firmware and RAM from the linker; agreement of the 1-D firmware with ONNX
Runtime running the QDQ graph (LSB) and with the 2-D firmware (equal outputs).

``conv1d_rows(target, n, work)`` gives the rows in bench/sequence.py's format (its ``ROWS``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES, FRAMES, CH, CLASSES, BLOCKS = 10, 49, 64, 12, 4


def _nets():
    import torch
    import torch.nn as nn

    def build(two_d: bool):
        conv = nn.Conv2d if two_d else nn.Conv1d
        bn = nn.BatchNorm2d if two_d else nn.BatchNorm1d
        k = (lambda n: (1, n)) if two_d else (lambda n: n)
        pad = (lambda n: (0, n)) if two_d else (lambda n: n)
        st = (lambda n: (1, n)) if two_d else (lambda n: n)
        layers = [conv(FEATURES, CH, k(5), stride=st(2), padding=pad(2)), bn(CH), nn.ReLU()]
        for _ in range(BLOCKS):
            layers += [conv(CH, CH, k(3), padding=pad(1), groups=CH), bn(CH), nn.ReLU(),
                       conv(CH, CH, k(1)), bn(CH), nn.ReLU()]
        layers += [(nn.AdaptiveAvgPool2d if two_d else nn.AdaptiveAvgPool1d)(1), nn.Flatten(),
                   nn.Linear(CH, CLASSES)]
        return nn.Sequential(*layers)

    torch.manual_seed(0)
    one = build(False)
    with torch.no_grad():
        for m in one.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2)
    two = build(True)
    sd = {k: (v.unsqueeze(2) if v.ndim == 3 else v) for k, v in one.state_dict().items()}
    two.load_state_dict(sd)
    return one.eval(), two.eval()


def _row(name, man, res, **extra) -> dict:
    return {"model": name, "flash": man["model_flash_bytes"], "ram": man["ram_bytes"],
            "arena": man["ram"]["arena_bytes"], "macs": man["macs"],
            "instructions": res.instructions_per_inference, "tflm_arena": None, **extra}


def conv1d_rows(target: str, n: int, work: Path) -> list[dict]:
    import torch

    from edgecomp import api
    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.demo import ort_outputs
    from edgecomp.frontends.torch import export_onnx

    one, two = _nets()
    rng = np.random.default_rng(0)
    cal = rng.standard_normal((64, FEATURES, FRAMES)).astype(np.float32)
    x = rng.standard_normal((n, FEATURES, FRAMES)).astype(np.float32)
    f1 = export_onnx(one, torch.zeros(1, FEATURES, FRAMES), work / "dscnn1d.onnx")
    f2 = export_onnx(two, torch.zeros(1, FEATURES, 1, FRAMES), work / "dscnn2d.onnx")
    q1 = quantize_onnx(f1, cal, work / "dscnn1d.int8.onnx", progress=False)
    q2 = quantize_onnx(f2, cal[:, :, None], work / "dscnn2d.int8.onnx", progress=False)
    m1 = api.compile_model(str(q1), target, work / "b1")
    m2 = api.compile_model(str(q2), target, work / "b2")
    p1 = api.run_bundle(work / "b1", x, progress=False)
    p2 = api.run_bundle(work / "b2", x[:, :, None], progress=False)
    oq = m1["outputs"][0]["quantization"]
    want = np.rint(ort_outputs(q1, x) / oq["scale"][0]).astype(np.int32) + oq["zero_point"][0]
    lsb = int(np.abs(p1.outputs.reshape(n, -1).astype(np.int32) - want.reshape(n, -1)).max())
    same = bool(np.array_equal(p1.outputs.reshape(n, -1), p2.outputs.reshape(n, -1)))
    ratio = p1.result.instructions_per_inference / p2.result.instructions_per_inference
    return [_row("DS-CNN 1-D (Conv1d) ONNX int8", m1, p1.result, reference="ORT QDQ",
                 agreement=f"{lsb} LSB max ({n} inputs); {'=' if same else '!='} 2-D twin; "
                           f"instructions {ratio:.4f} x 2-D"),
            _row("DS-CNN 2-D twin (Conv2d 1xk) ONNX int8", m2, p2.result, reference="-", agreement="-")]


def render(rows: list[dict], target: str, n: int) -> str:
    lines = [f"# 1-D DS-CNN vs the same network with 2-D 1xk convolutions ({target})", "",
             f"`python bench/conv1d.py --target {target} --inputs {n}` (instructions under QEMU -icount shift=0; "
             "flash: the model's part of the firmware; RAM: arena + static + stack)", "",
             "| model | reference | agreement | flash (B) | RAM (B) | arena (B) | MACs | instructions / inference |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['reference']} | {r['agreement']} | {r['flash']:,} | {r['ram']:,} | "
                     f"{r['arena']:,} | {r['macs']:,} | {r['instructions']:,} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench/results/conv1d.md"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        rows = conv1d_rows(a.target, a.inputs, Path(td))
    text = render(rows, a.target, a.inputs)
    print(text)
    Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
