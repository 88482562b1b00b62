#!/usr/bin/env python3
"""Record (or compare) the bytes of a fixed set of bundles: the guard rail for restructuring.

    python scripts/golden_bundles.py record  golden.json [--inputs DIR]
    python scripts/golden_bundles.py compare golden.json [--inputs DIR]

The model files are made once into ``--inputs`` (default /tmp/edgecomp-golden-inputs): the
digits CNN exported to ONNX and quantized by ONNX Runtime (int8, int16, its Q15 power-of-two
rewrite) and one-layer models of tests/layer_zoo.py (int8, int16, float32), so a comparison
never depends on training or calibration being repeatable.  Every model is compiled with
``edgecomp.api.compile_model`` (the same path as ``edgecomp compile``) for several targets and
options; the record is the sha256 of every file the bundle lists plus its flash / RAM figures.

``compare`` prints each bundle whose files or sizes differ (file by file) and exits 1 if any do.
Kernel sources (``ec_*.c`` / ``ec_*.h``) may be re-organized on purpose: ``--generated-only``
compares only the generated files (model.c, model.h, weights.c, Makefile, linker.ld, ...).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's edgecomp, not an installed copy
MLPERF = Path(os.environ.get("EDGECOMP_MLPERF_DIR", ROOT.parent / "shared/benchmarks/mlperf_tiny"))

ZOO_INT8 = ["conv", "conv_relu_stride2", "conv_dilated", "depthwise", "depthwise_mult2_stride2", "fc_flatten",
            "fc_clip", "relu", "clip", "maxpool", "avgpool", "avgpool_3x3_s2_pad", "global_avgpool", "add",
            "add_relu", "concat", "softmax"]
ZOO_INT16 = ["conv", "conv_relu_stride2", "conv_dilated", "depthwise", "depthwise_mult2_stride2", "fc_flatten",
             "fc_clip", "maxpool", "add_relu", "avgpool_3x3_s2_pad", "global_avgpool", "concat"]


def make_inputs(d: Path) -> list[tuple[str, Path]]:
    """The model files (made once), as (label, path)."""
    import numpy as np
    d.mkdir(parents=True, exist_ok=True)
    models: list[tuple[str, Path]] = []
    for f in ("ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite",
              "ad01_fp32.tflite", "kws_ref_model_float32.tflite"):
        if (MLPERF / f).is_file():
            models.append((f.split(".")[0], MLPERF / f))
    done = d / "done"
    if not done.exists():
        import torch
        sys.path.insert(0, str(ROOT / "tests"))
        from layer_zoo import Layer

        from edgecomp.compress.fixedpoint import to_power_of_two
        from edgecomp.compress.quantize import quantize_onnx
        from edgecomp.demo import digits_split, make_cnn, train
        from edgecomp.frontends.torch import export_onnx
        torch.manual_seed(0)
        xtr, ytr, _, _ = digits_split()
        net = make_cnn()
        train(net, xtr, ytr, epochs=3, verbose=False)
        export_onnx(net.eval(), torch.from_numpy(xtr[:1]), d / "digits.float.onnx")
        calib = xtr[:200]
        quantize_onnx(d / "digits.float.onnx", calib, d / "digits.int8.onnx")
        quantize_onnx(d / "digits.float.onnx", calib, d / "digits.int16.onnx", activations="int16")
        to_power_of_two(d / "digits.int16.onnx", d / "digits.q15.onnx")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 4, 6, 6)).astype(np.float32)
        for kind in sorted(set(ZOO_INT8) | set(ZOO_INT16)):
            torch.manual_seed(1)
            m = Layer(kind).eval()
            export_onnx(m, torch.from_numpy(x[:1]), d / f"zoo_{kind}.float.onnx")
            if kind in ZOO_INT8:
                quantize_onnx(d / f"zoo_{kind}.float.onnx", x, d / f"zoo_{kind}.int8.onnx")
            if kind in ZOO_INT16:
                quantize_onnx(d / f"zoo_{kind}.float.onnx", x, d / f"zoo_{kind}.int16.onnx", activations="int16")
        done.write_text("ok\n")
    for p in sorted(d.glob("*.onnx")):
        models.append((p.name[:-5], p))
    return models


def cases(models: list[tuple[str, Path]]) -> list[tuple[str, Path, str, dict]]:
    out = []
    for label, path in models:
        big = label.split("_")[0] in ("ad01", "kws", "pretrainedResnet", "vww")
        if big:
            targets = [("cortex-m4", {}), ("cortex-m4", {"optimize": "speed"}), ("cortex-m3", {})]
            if "int8" in label or "quant" in label or label == "kws_ref_model":
                targets.append(("host", {}))
        elif label.startswith("digits"):
            targets = [("cortex-m4", {}), ("cortex-m4", {"optimize": "speed"}), ("cortex-m0", {}), ("host", {})]
        else:
            targets = [("cortex-m4", {}), ("cortex-m3", {})]
        for t, o in targets:
            out.append((f"{label}@{t}" + "".join(f"+{k}={v}" for k, v in o.items()), path, t, o))
    return out


def digest(bundle: Path, man: dict) -> dict:
    files = {}
    for f in sorted(man.get("files", {})):
        files[f] = hashlib.sha256((bundle / f).read_bytes()).hexdigest()
    return {"files": files, "flash_bytes": man.get("flash_bytes"), "ram_bytes": man.get("ram_bytes"),
            "arena_bytes": (man.get("ram") or {}).get("arena_bytes")}


def run_all(inputs: Path, only: str | None) -> dict:
    from edgecomp.api import compile_model
    res = {}
    todo = [c for c in cases(make_inputs(inputs)) if only is None or only in c[0]]
    with tempfile.TemporaryDirectory(prefix="golden-") as td:
        for i, (key, path, target, opts) in enumerate(todo):
            out = Path(td) / f"b{i}"
            precision = "float32" if ".float" in path.name or "fp32" in path.name or "float32" in path.name else "int8"
            try:
                man = compile_model(path, target, out, precision=precision, options=opts)
                res[key] = digest(out, man)
            except Exception as e:  # recorded: a refusal must stay a refusal
                res[key] = {"error": f"{type(e).__name__}: {e}".replace(str(out), "BUNDLE")}
            print(f"[{i + 1}/{len(todo)}] {key}: " + ("error" if "error" in res[key] else "ok"), flush=True)
            shutil.rmtree(out, ignore_errors=True)
    return res


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["record", "compare"])
    p.add_argument("golden")
    p.add_argument("--inputs", default="/tmp/edgecomp-golden-inputs")
    p.add_argument("--only", help="only the cases whose key contains this")
    p.add_argument("--generated-only", action="store_true", help="ignore the kernel sources (ec_*.c, ec_*.h)")
    a = p.parse_args()
    res = run_all(Path(a.inputs), a.only)
    if a.mode == "record":
        Path(a.golden).write_text(json.dumps(res, indent=1, sort_keys=True))
        print(f"recorded {len(res)} bundles in {a.golden}")
        return 0
    gold = json.loads(Path(a.golden).read_text())
    bad = 0
    for key, now in res.items():
        was = gold.get(key)
        if was is None:
            print(f"NEW      {key}")
            continue
        diffs = []
        if "error" in was or "error" in now:
            if was.get("error") != now.get("error"):
                diffs.append(f"error {was.get('error')!r} -> {now.get('error')!r}")
        else:
            skip = (lambda f: f.startswith("ec_") and f not in ("ec_platform.c", "ec_platform.h",
                                                                 "ec_platform_host.c")) if a.generated_only \
                else (lambda f: False)
            fw = {f: h for f, h in was["files"].items() if not skip(f)}
            fn = {f: h for f, h in now["files"].items() if not skip(f)}
            for f in sorted(set(fw) | set(fn)):
                if fw.get(f) != fn.get(f):
                    diffs.append(f"file {f}: {'missing' if f not in fn else 'new' if f not in fw else 'differs'}")
            for k in ("arena_bytes", "ram_bytes") + (() if a.generated_only else ("flash_bytes",)):
                if was.get(k) != now.get(k):
                    diffs.append(f"{k} {was.get(k)} -> {now.get(k)}")
        if diffs:
            bad += 1
            print(f"DIFFERS  {key}: " + "; ".join(diffs))
    print(f"{len(res) - bad} of {len(res)} bundles as recorded")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
