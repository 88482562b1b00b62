"""The digits demo model on every emulated Cortex-M target: flash, RAM, instructions per inference.

    python bench/demo_model.py [--targets cortex-m4 cortex-m7 cortex-m3 cortex-m0] [--out bench/results/demo_model.md]

Flash and RAM come from `arm-none-eabi-size` and the measured stack peak (manifest);
instructions per inference from QEMU `-icount shift=0` (deterministic counts).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from edgecomp import api
    from edgecomp.demo import digits_split, make_cnn, torch_accuracy, train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="*", default=["cortex-m4", "cortex-m7", "cortex-m3", "cortex-m0"])
    p.add_argument("--samples", type=int, default=0, help="test digits run through each firmware (0: all)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo_model.md")
    a = p.parse_args(argv)
    from edgecomp.outputs import check_output_file
    check_output_file(a.out, "--out", create_parent=True)  # before the work
    torch.set_num_threads(2)
    xtr, ytr, xte, yte = digits_split(0)
    torch.manual_seed(0)
    model = train(make_cnn(), xtr, ytr, epochs=40, seed=0, verbose=False)
    acc = torch_accuracy(model, xte, yte)
    a.samples = a.samples or len(xte)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ec-demo-bench-") as td:
        for t in a.targets:
            print(f"... {t}", file=sys.stderr, flush=True)
            out = Path(td) / t
            man = api.compile_model(model, t, out, example_input=torch.from_numpy(xte[:1]), calib=xtr[:300])
            pred = api.run_bundle(out, xte[:a.samples], emulate=True)
            fw_acc = float((pred.outputs.reshape(a.samples, -1).argmax(1) == yte[:a.samples]).mean())
            ram = man["ram"]
            rows.append([t, man["params"], man["macs"], man["flash_bytes"], man["ram_bytes"], ram["arena_bytes"],
                         ram["static_bytes"], ram["stack_peak_bytes"], pred.result.instructions_per_inference,
                         pred.result.instructions_per_inference / man["macs"], fw_acc])
    lines = ["| target | params | MACs | flash (B) | RAM (B) | arena | static | stack peak | instructions / inference "
             "| instr / MAC | firmware acc. (first N test digits) |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]:,} | {r[2]:,} | {r[3]:,} | {r[4]:,} | {r[5]:,} | {r[6]:,} | {r[7]:,} | "
                     f"{r[8]:,} | {r[9]:.2f} | {r[10] * 100:.1f} % (N={a.samples}) |")
    lines += ["", f"fp32 accuracy of the trained model on all {len(yte)} test digits: {acc * 100:.2f} %", "",
              "Command: `python bench/demo_model.py`"]
    table = "\n".join(lines)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
