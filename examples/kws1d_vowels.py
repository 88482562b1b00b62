"""A keyword-spotting-style 1-D CNN on the UEA JapaneseVowels set, trained here, compiled to int8
firmware for a Cortex-M4.

    python examples/kws1d_vowels.py [--target cortex-m4] [--output out/kws1d_vowels] [--epochs 80]

Data: JapaneseVowels from aeon's wheel (nothing is downloaded; edgecomp.datasets.load_uea_split):
9 speakers saying "ae", 12 LPC cepstra per frame, 7-29 frames zero-padded at the start to 29, the
archive's 270 / 370 train / test split, channels normalized with the training set's statistics.
The model reads [N, 12 channels, 29 frames] like a keyword-spotting network reads MFCC frames: a
Conv1d(12 -> 32, k=3) + BatchNorm + ReLU, two depthwise-separable blocks (depthwise Conv1d k=3,
pointwise Conv1d), global average pooling over time, Linear(32 -> 9); trained in float32 on CPU
(seconds).  edgecomp quantizes it (ONNX Runtime's calibration on the training set) and runs the
1-D layers on its 2-D kernels with height 1; QEMU runs every test sequence through the firmware.

Prints the float model's accuracy beside the firmware's, their top-1 agreement, flash, RAM and
instructions per inference, and writes ``results.json`` in the output folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def make_model(channels: int = 12, width: int = 32, classes: int = 9):
    import torch.nn as nn

    def block(cin, cout, k, groups=1):
        return [nn.Conv1d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm1d(cout), nn.ReLU()]

    return nn.Sequential(*block(channels, width, 3),
                         *block(width, width, 3, groups=width), *block(width, width, 1),
                         *block(width, width, 3, groups=width), *block(width, width, 1),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(width, classes))


def train(model, x, y, epochs: int, seed: int = 0):
    import numpy as np
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 32)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def run(target: str = "cortex-m4", out: str | Path = "out/kws1d_vowels", epochs: int = 80, seed: int = 0) -> dict:
    import numpy as np
    import torch

    from edgecomp import api
    from edgecomp.datasets import load_uea_split

    torch.set_num_threads(2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = load_uea_split("JapaneseVowels")
    xtr, xte = (np.ascontiguousarray(a.transpose(0, 2, 1)) for a in (xtr, xte))  # [N, channels, frames]
    model = train(make_model(), xtr, ytr, epochs, seed)
    with torch.no_grad():
        float_pred = model(torch.from_numpy(xte)).argmax(1).numpy()
    man = api.compile_model(model, target, out / target, example_input=torch.from_numpy(xte[:1]), calib=xtr,
                            keep_onnx=out / "kws1d.int8.onnx", force=True)
    pred = api.run_bundle(out / target, xte, progress=False)
    fw_pred = pred.outputs.reshape(len(xte), -1).argmax(1)
    res = {
        "dataset": "JapaneseVowels (aeon)", "test_sequences": int(len(xte)), "target": target,
        "input": man["inputs"][0], "float_accuracy": float((float_pred == yte).mean()),
        "firmware_accuracy": float((fw_pred == yte).mean()), "agreement": float((fw_pred == float_pred).mean()),
        "flash_bytes": man["flash_bytes"], "ram_bytes": man["ram_bytes"], "macs": man["macs"],
        "instructions_per_inference": pred.result.instructions_per_inference,
    }
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--output", default="out/kws1d_vowels")
    ap.add_argument("--epochs", type=int, default=80)
    a = ap.parse_args(argv)
    r = run(a.target, a.output, a.epochs)
    print(f"JapaneseVowels, {r['test_sequences']} test sequences, 1-D DS-CNN -> 9 speakers on {r['target']}")
    print(f"  float32 accuracy   {100 * r['float_accuracy']:.1f} %")
    print(f"  int8 firmware      {100 * r['firmware_accuracy']:.1f} %   (QEMU)")
    print(f"  top-1 agreement    {100 * r['agreement']:.1f} %")
    print(f"  flash {r['flash_bytes']:,} B, RAM {r['ram_bytes']:,} B, {r['macs']:,} MACs, "
          f"{r['instructions_per_inference']:,} instructions per inference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
