"""The built-in example (`edgecomp demo`): digits CNN -> int8 -> Cortex-M4 firmware under QEMU.

Trains a small CNN on scikit-learn's 8x8 digits (seeded, CPU, well under a
minute), quantizes it with ONNX Runtime, compiles it for the target, runs the
whole held-out split through the firmware and prints fp32 accuracy, int8
accuracy (ONNX Runtime), firmware accuracy, firmware/ORT agreement, flash, RAM
and instructions per inference.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def digits_split(seed: int = 0):
    """(x_train, y_train, x_test, y_test): digits as float32 [N,1,8,8] in [0,1], 80/20 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def make_cnn():
    import torch.nn as nn

    class DigitsCNN(nn.Module):
        """8x8x1 -> conv 8 -> conv 16 /2 -> depthwise 16 + residual -> conv 1x1 32 -> avgpool -> fc 10."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16))
            self.relu = nn.ReLU()
            self.pw = nn.Sequential(nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU6())
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(32 * 2 * 2, 10)

        def forward(self, x):
            x = self.conv2(self.conv1(x))
            x = self.relu(x + self.dw(x))
            x = self.pool(self.pw(x))
            return self.fc(x.flatten(1))

    return DigitsCNN()


def train(model, x, y, *, epochs: int = 40, seed: int = 0, lr: float = 3e-3, verbose: bool = True):
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if verbose and (ep % 10 == 9 or ep == epochs - 1):
            print(f"  epoch {ep + 1}/{epochs}: loss {total / len(xt):.4f}", file=sys.stderr)
    model.eval()
    return model


def torch_accuracy(model, x, y) -> float:
    import torch
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def ort_outputs(onnx_path: Path, x: np.ndarray, fused: bool = False) -> np.ndarray:
    from .compress.quantize import reference_session
    s = reference_session(onnx_path, fused=fused)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def main(target: str = "cortex-m4", out: str | Path = "out/digits", quick: bool = False, seed: int = 0,
         force: bool = False) -> int:
    """Run the demo into ``out`` (written whole at the end, under the output-folder rule of
    :mod:`edgecomp.outputs`, checked before training)."""
    from .bundle import atomic_dir
    from .outputs import check_output_dir
    from .targets import load_target

    load_target(target)  # found now, not after the training
    out = check_output_dir(out, force=force).dest
    with atomic_dir(out, force=force) as work:
        return _demo(target, out, work, quick, seed)


def _demo(target: str, out: Path, work: Path, quick: bool, seed: int) -> int:
    """The demo, writing into ``work`` (which becomes ``out``)."""
    import torch

    from .api import compile_model, run_bundle
    from .bundle import write_manifest

    torch.set_num_threads(2)
    t0 = time.time()
    xtr, ytr, xte, yte = digits_split(seed)
    print(f"[1/5] training a CNN on {len(xtr)} digits (8x8), testing on {len(xte)}", file=sys.stderr)
    torch.manual_seed(seed)
    model = train(make_cnn(), xtr, ytr, epochs=15 if quick else 40, seed=seed)
    acc_fp32 = torch_accuracy(model, xte, yte)

    print(f"[2/5] int8 post-training quantization (ONNX Runtime, {min(300, len(xtr))} calibration samples) "
          f"and compiling for {target}", file=sys.stderr)
    qdq = work / "model.int8.onnx"
    man = compile_model(model, target, work / "bundle", example_input=torch.from_numpy(xte[:1]),
                        calib=xtr[:300], keep_onnx=qdq)

    print("[3/5] ONNX Runtime on the int8 model", file=sys.stderr)
    ort_logits = ort_outputs(qdq, xte)
    acc_int8 = float((ort_logits.argmax(1) == yte).mean())
    acc_int8_fused = float((ort_outputs(qdq, xte, fused=True).argmax(1) == yte).mean())
    oq = man["outputs"][0]["quantization"]
    ort_q = np.round(ort_logits / oq["scale"][0]).astype(np.int32) + oq["zero_point"][0]

    print(f"[4/5] running all {len(xte)} test digits through the firmware "
          f"({'QEMU ' + str(man.get('target_info', {}).get('qemu_machine', '')) if target != 'host' else 'host gcc'})", file=sys.stderr)
    pred = run_bundle(work / "bundle", xte, emulate=target != "host")
    fw_q = pred.outputs.reshape(len(xte), -1).astype(np.int32)
    acc_fw = float((fw_q.argmax(1) == yte).mean())
    agree = float((fw_q.argmax(1) == ort_q.argmax(1)).mean())
    max_lsb = int(np.abs(fw_q - ort_q).max())

    res = pred.result
    per_inf = getattr(res, "instructions_per_inference", None)
    summary = {
        "target": target,
        "test_samples": int(len(xte)),
        "accuracy_fp32": round(acc_fp32, 4),
        "accuracy_int8_onnxruntime": round(acc_int8, 4),
        "accuracy_int8_onnxruntime_fused_kernels": round(acc_int8_fused, 4),
        "accuracy_firmware": round(acc_fw, 4),
        "top1_agreement_firmware_vs_onnxruntime": round(agree, 4),
        "max_output_difference_lsb": max_lsb,
        "params": man.get("params"),
        "macs": man.get("macs"),
        "flash_bytes": man.get("flash_bytes"),
        "ram_bytes": man.get("ram_bytes"),
        "ram": man.get("ram"),
        "instructions_per_inference": per_inf,
        "tick_unit": getattr(res, "unit", None),
        "seconds": round(time.time() - t0, 1),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_manifest(work, {"kind": "demo", "summary": "summary.json", "bundle": "bundle"})
    print("[5/5] results", file=sys.stderr)
    ram = man.get("ram", {})
    print(f"""
digits demo -> {target}  ({len(xte)} held-out digits)
  accuracy fp32 (PyTorch)            {acc_fp32 * 100:6.2f} %
  accuracy int8 (ONNX Runtime)       {acc_int8 * 100:6.2f} %   (QDQ graph as written; ORT's fused x86 kernels: {acc_int8_fused * 100:.2f} %)
  accuracy firmware ({target:9s})     {acc_fw * 100:6.2f} %
  firmware vs ONNX Runtime: top-1 agreement {agree * 100:.2f} %, largest output difference {max_lsb} LSB
  parameters {man.get('params', 0):,}   MACs/inference {man.get('macs', 0):,}
  flash {man.get('flash_bytes', 0):,} B   RAM {man.get('ram_bytes', 0):,} B (arena {ram.get('arena_bytes', 0):,} + static {ram.get('static_bytes', 0):,} + stack peak {ram.get('stack_peak_bytes', 0):,})
  instructions per inference: {per_inf if per_inf is not None else 'n/a'}
  bundle: {out / 'bundle'}   summary: {out / 'summary.json'}   ({summary['seconds']} s)""")
    return 0
