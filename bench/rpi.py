"""Raspberry Pi bundle latency, measured with each bundle's own probe.py.

    python bench/rpi.py [--runs 100] [--threads 1,2] [--out bench/results/rpi.md] [--aarch64 DIR]

Without a Pi at hand this runs on the machine it is started on (an x86 stand-in: the
numbers compare runtimes and precisions, they are not Pi latencies; run the same bundles
on a Pi with `edgecomp deploy`).  Two tables:

1. ONNX Runtime, float32 vs int8 (QDQ S8S8 from ORT's quantize_static) for a small
   MNIST-shaped CNN compiled for rpi4.
2. The MLPerf Tiny models (../shared/benchmarks/mlperf_tiny) through LiteRT, float32 vs
   int8; then the same float networks exported to ONNX (edgecomp.backends.onnx_export) in
   ONNX Runtime, float32 vs int8, side by side with LiteRT.
3. With an aarch64 userland (scripts/aarch64_userland.sh DIR; default ~/.cache/edgecomp/aarch64
   when present): the CNN bundles' probe.py under qemu-aarch64-static -cpu cortex-a72 / cortex-a76,
   i.e. ONNX Runtime's Arm kernels (no SDOT on A72, SDOT on A76).  Emulated time is not Pi time;
   the float32/int8 ratio there only hints at the Arm kernels' relative work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MLPERF = Path(os.environ.get("EDGECOMP_MLPERF_DIR", ROOT.parent / "shared" / "benchmarks" / "mlperf_tiny"))
MLPERF_PAIRS = [("ad01 (anomaly detection, FC)", "ad01_fp32.tflite", "ad01_int8.tflite"),
                ("kws (DS-CNN)", "kws_ref_model_float32.tflite", "kws_ref_model.tflite"),
                ("ic (ResNet-8)", "pretrainedResnet.tflite", "pretrainedResnet_quant.tflite"),
                ("vww (MobileNetV1 0.25)", "vww_96_float.tflite", "vww_96_int8.tflite")]


def cnn_onnx(path: Path) -> Path:
    import torch
    from edgecomp.frontends.torch import export_onnx
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    return export_onnx(m, torch.zeros(1, 1, 28, 28), path)


def probe(bundle: Path, runs: int, threads: str) -> dict:
    out = bundle / "bench-probe.json"
    r = subprocess.run([sys.executable, str(bundle / "probe.py"), "--runs", str(runs), "--warmup", "10",
                        "--threads", threads, "--json", str(out)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"probe failed for {bundle}:\n{r.stderr}")
    return json.loads(out.read_text())


def probe_aarch64(userland: Path, bundle: Path, cpu: str, runs: int) -> dict:
    import shutil
    out = bundle / f"bench-probe-{cpu}.json"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(userland / "site"), "PYTHONNOUSERSITE": "1",
           "LC_ALL": "C.UTF-8"}
    cmd = [shutil.which("qemu-aarch64-static") or "qemu-aarch64-static", "-cpu", cpu, "-L", str(userland / "rootfs"),
           str(userland / "rootfs/usr/bin/python3.11"), str(bundle / "probe.py"), "--runs", str(runs),
           "--warmup", "3", "--threads", "1", "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if r.returncode != 0:
        raise SystemExit(f"aarch64 probe failed for {bundle} ({cpu}):\n{r.stderr}")
    return json.loads(out.read_text())


def p50(res: dict, t: int) -> float:
    return next(r["p50_ms"] for r in res["results"] if r["threads"] == t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rpi.md"))
    ap.add_argument("--aarch64", default=str(Path.home() / ".cache" / "edgecomp" / "aarch64"),
                    help="aarch64 userland from scripts/aarch64_userland.sh ('none' to skip)")
    a = ap.parse_args(argv)
    from edgecomp.outputs import check_output_file
    check_output_file(a.out, "--out", create_parent=True)  # before the work
    from edgecomp.backends.rpi import write_rpi_bundle
    import onnxruntime as ort
    threads = [int(t) for t in a.threads.split(",")]
    t0 = time.time()
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-rpi-") as td:
        td = Path(td)
        src = cnn_onnx(td / "cnn.onnx")
        calib = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
        write_rpi_bundle(src, "rpi4", td / "cnn-fp32", precision="float32")
        write_rpi_bundle(src, "rpi4", td / "cnn-int8", calib=calib)
        f32, i8 = probe(td / "cnn-fp32", a.runs, a.threads), probe(td / "cnn-int8", a.runs, a.threads)
        lines += ["## ONNX Runtime: float32 vs int8 (MNIST-shaped CNN, 3 conv + 2 FC, rpi4 bundles)", "",
                  "| threads | float32 p50 ms | int8 p50 ms | float32 / int8 |", "|---:|---:|---:|---:|"]
        for t in threads:
            lines.append(f"| {t} | {p50(f32, t):.3f} | {p50(i8, t):.3f} | {p50(f32, t) / p50(i8, t):.2f}x |")
        size32 = (td / "cnn-fp32" / "model.onnx").stat().st_size
        size8 = (td / "cnn-int8" / "model.onnx").stat().st_size
        lines += ["", f"model.onnx: {size32:,} bytes float32, {size8:,} bytes int8 QDQ.", ""]

        lines += ["## LiteRT: float32 vs int8 (MLPerf Tiny reference models, threads=1)", "",
                  "| model | float32 p50 ms | int8 p50 ms | float32 / int8 | float32 p99 | int8 p99 |",
                  "|---|---:|---:|---:|---:|---:|"]
        for title, ffile, qfile in MLPERF_PAIRS:
            res = {}
            for kind, f in (("f", ffile), ("q", qfile)):
                b = td / f.replace(".tflite", "")
                write_rpi_bundle(MLPERF / f, "rpi4", b)
                res[kind] = probe(b, a.runs, "1")["results"][0]
            lines.append(f"| {title} | {res['f']['p50_ms']:.3f} | {res['q']['p50_ms']:.3f} | "
                         f"{res['f']['p50_ms'] / res['q']['p50_ms']:.2f}x | {res['f']['p99_ms']:.3f} | "
                         f"{res['q']['p99_ms']:.3f} |")
        lines += ["", "## ONNX Runtime vs LiteRT on the same networks (MLPerf Tiny float models, threads=1)", "",
                  "The float .tflite files exported to ONNX by `edgecomp.backends.onnx_export` (tested equal to "
                  "LiteRT's outputs), int8 by ONNX Runtime's quantize_static (QDQ S8S8, 64 random calibration "
                  "inputs: fine for latency, not for accuracy). Ratios are of p50 times: ORT / LiteRT above 1 means ONNX "
                  "Runtime is slower.", "",
                  "| model | ORT float32 p50 ms | ORT int8 p50 ms | ORT float32 / int8 | LiteRT float32 p50 ms "
                  "| ORT / LiteRT (float32) | LiteRT int8 p50 ms | ORT / LiteRT (int8) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        from edgecomp.backends.onnx_export import to_onnx
        from edgecomp.frontends.tflite import load_tflite
        for title, ffile, qfile in MLPERF_PAIRS:
            g = load_tflite(MLPERF / ffile)
            onnx_f = to_onnx(g, td / ffile.replace(".tflite", ".onnx"))
            shape = g.tensors[g.inputs[0]].shape
            cal = np.random.default_rng(0).random((64,) + tuple(shape[1:]), dtype=np.float32)
            bf, bq = td / (ffile + "-ort-f32"), td / (ffile + "-ort-int8")
            write_rpi_bundle(onnx_f, "rpi4", bf, precision="float32")
            write_rpi_bundle(onnx_f, "rpi4", bq, calib=cal)
            of, oq = probe(bf, a.runs, "1")["results"][0], probe(bq, a.runs, "1")["results"][0]
            lf = probe(td / ffile.replace(".tflite", ""), a.runs, "1")["results"][0]
            lq = probe(td / qfile.replace(".tflite", ""), a.runs, "1")["results"][0]
            lines.append(f"| {title} | {of['p50_ms']:.3f} | {oq['p50_ms']:.3f} | {of['p50_ms'] / oq['p50_ms']:.2f}x | "
                         f"{lf['p50_ms']:.3f} | {of['p50_ms'] / lf['p50_ms']:.2f}x | {lq['p50_ms']:.3f} | "
                         f"{oq['p50_ms'] / lq['p50_ms']:.2f}x |")
        litert_version = probe(td / "ad01_int8", 1, "1")["runtime_version"]
        ul = Path(a.aarch64)
        if a.aarch64 != "none" and (ul / "rootfs" / "usr" / "bin" / "python3.11").is_file():
            runs = max(5, a.runs // 10)
            lines += ["", f"## Emulated aarch64: ONNX Runtime Arm kernels under qemu-aarch64-static (CNN, threads=1, "
                      f"{runs} runs)", "",
                      "| QEMU -cpu | float32 p50 ms | int8 p50 ms | float32 / int8 | onnxruntime |",
                      "|---|---:|---:|---:|---|"]
            for cpu in ("cortex-a72", "cortex-a76"):
                f, q = (probe_aarch64(ul, td / b, cpu, runs) for b in ("cnn-fp32", "cnn-int8"))
                lines.append(f"| {cpu} | {p50(f, 1):.2f} | {p50(q, 1):.2f} | {p50(f, 1) / p50(q, 1):.2f}x | "
                             f"{f['runtime_version']} |")
            lines += ["", "Emulated milliseconds are QEMU's, not a Pi's (TCG translation, no cache or pipeline "
                      "model), and QEMU runs floating-point instructions through software helpers while integer NEON is "
                      "translated inline, so float32 is penalized: the ratio says the Arm int8 path is taken (and "
                      "that SDOT on A76 helps), not how much faster int8 is on a real Pi."]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    head = ["# Raspberry Pi bundles: latency (x86 stand-in)", "",
            "Measured with each bundle's own `probe.py` (warm-up 10, then "
            f"{a.runs} runs timed with `time.perf_counter_ns`), on **{cpu}** ({platform.machine()}, "
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}, ai-edge-litert {litert_version}) "
            "-- *not a Raspberry Pi*: a stand-in on the build host, shared with other jobs, so compare ratios, "
            "not absolute numbers.  On a Pi run the same bundles with `edgecomp deploy BUNDLE --host pi@...`.", "",
            "The MLPerf Tiny float models run in ONNX Runtime through edgecomp's own float TFLite -> ONNX "
            "export (tf2onnx imports TensorFlow, which is not installed); kws_ref_model_float32 has one "
            "dynamic-range conv that LiteRT runs in int8 and the export runs in float.", "",
            "Note on x86 int8: without AVX-VNNI, ONNX Runtime's x86 u8s8 kernels sum pairs of 8-bit products "
            "in 16 bits (vpmaddubsw) and can saturate, so the int8 outputs here may differ by a few LSB from "
            "an Arm CPU's (Arm's kernels do not saturate; tests/test_rpi_aarch64.py checks the Arm results "
            "are exact).", "",
            f"Command: `python bench/rpi.py --runs {a.runs} --threads {a.threads}` ({time.time() - t0:.0f} s)", ""]
    text = "\n".join(head + lines) + "\n"
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
