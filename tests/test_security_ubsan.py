"""Generated C has no undefined behaviour on the fuzz corpus (issue 20 item 10).

Host bundles of (a) the mutated ONNX models the fuzzer's importer accepts (scripts/fuzz_long.py's
strategies, derandomized), (b) mutated MLPerf Tiny TFLite models it accepts, and (c) TFLite
layers at the attribute bounds (strides, dilations and filters up to 65,536) are built with
``-fsanitize=undefined,address -fno-sanitize-recover=all`` and run on random inputs: any
signed overflow, shift out of range, misaligned or out-of-bounds access stops the program.
Attributes beyond the bound (the review's dilation 2^30 and stride 2^31-1, which overflowed in
ec_kernels.c and ec_kernels_dsp.c) are refused by the frontend (tests/test_security_inputs.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]
SANITIZE = "-fsanitize=undefined,address -fno-sanitize-recover=all -fno-omit-frame-pointer"


def _corpus_onnx(n: int) -> list[tuple[str, bytes]]:
    """The first ``n`` distinct accepted cases of the fuzzer's ONNX strategy (derandomized)."""
    import fuzz_long
    from hypothesis import HealthCheck, given, settings

    from edgecomp.errors import EdgecompError
    from edgecomp.frontends.onnx import from_onnx

    found: dict[bytes, str] = {}

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_long.onnx_cases())
    def collect(case):
        desc, data = case
        if len(found) >= n or data in found:
            return
        p = Path(os.environ["EC_CORPUS_DIR"]) / "m.onnx"
        p.write_bytes(data)
        try:
            from_onnx(p)
        except EdgecompError:
            return
        found[data] = desc

    collect()
    return [(d, b) for b, d in found.items()]


def _bound_tflite(builder) -> list[tuple[str, bytes]]:
    """Conv -> depthwise -> average pool chains with attributes at the frontend's bound (SAME padding)."""
    def q(name, shape, scale, zp, **kw):
        return dict(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp], **kw)

    out = []
    w = (np.arange(18, dtype=np.int8) - 9).reshape(1, 3, 3, 2)
    for stride, dil, pool_k, pool_s in ((65536, 1, 3, 65536), (1, 65536, 65536, 1), (3, 32768, 8, 2)):
        h1 = -(-8 // stride)
        h2 = -(-h1 // stride)
        h3 = -(-h2 // pool_s)
        conv = {"Padding": 0, "StrideH": stride, "StrideW": stride, "DilationHFactor": dil, "DilationWFactor": dil}
        out.append((f"conv/depthwise stride {stride} dilation {dil}, pool {pool_k}/{pool_s}", builder(
            [q("x", (1, 8, 8, 2), 0.1, 3), q("w", (2, 3, 3, 2), 0.02, 0, data=np.concatenate([w, -w])),
             q("c", (1, h1, h1, 2), 0.07, -2), q("dw", (1, 3, 3, 2), 0.03, 0, data=w),
             q("d", (1, h2, h2, 2), 0.05, 1), q("y", (1, h3, h3, 2), 0.05, 1)],
            [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2], options=("Conv2DOptions", conv)),
             dict(op="DEPTHWISE_CONV_2D", inputs=[2, 3, -1], outputs=[4],
                  options=("DepthwiseConv2DOptions", {**conv, "DepthMultiplier": 1})),
             dict(op="AVERAGE_POOL_2D", inputs=[4], outputs=[5],
                  options=("Pool2DOptions", {"Padding": 0, "StrideH": pool_s, "StrideW": pool_s,
                                             "FilterHeight": pool_k, "FilterWidth": pool_k,
                                             "FusedActivationFunction": 0}))], [0], [5])))
    return out


def _review_tflite(builder) -> list[tuple[str, bytes]]:
    """The review's findings: dilation 2^30 and stride 2^31-1 (signed overflow in ec_kernels_dsp.c)."""
    def q(name, shape, scale, zp, **kw):
        return dict(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp], **kw)

    w = (np.arange(18, dtype=np.int8) - 9).reshape(1, 3, 3, 2)
    out = []
    for stride, dil in ((1, 1 << 30), ((1 << 31) - 1, 1)):
        for op, opts in (("CONV_2D", "Conv2DOptions"), ("DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions")):
            fields = {"Padding": 0, "StrideH": stride, "StrideW": stride, "DilationHFactor": dil,
                      "DilationWFactor": dil, **({"DepthMultiplier": 1} if op != "CONV_2D" else {})}
            wt = np.concatenate([w, -w]) if op == "CONV_2D" else w
            h = -(-8 // stride)
            out.append((f"{op} stride {stride} dilation {dil}", builder(
                [q("x", (1, 8, 8, 2), 0.1, 3), q("w", wt.shape, 0.02, 0, data=wt), q("y", (1, h, h, 2), 0.07, -2)],
                [dict(op=op, inputs=[0, 1, -1], outputs=[2], options=(opts, fields))], [0], [2])))
    return out


def _run_sanitized(model: Path, work: Path, rng) -> str | None:
    """None if the model is refused (a clear error); else generate, build sanitized, run; raise on UB."""
    from edgecomp.backends.emulator import INPUT_FILE, run_firmware
    from edgecomp import api
    from edgecomp.backends.c import generate
    from edgecomp.options import CodegenOptions
    from edgecomp.backends.cortex_m import build, write_firmware
    from edgecomp.errors import EdgecompError
    from edgecomp.targets import load_target

    src = work / "src"
    src.mkdir()
    try:  # the bundle's C exactly as compile writes it (DSP kernels: their plain C twins run on the host)
        graph, _ = api.load_graph(model, work, precision="float32")
        generate(graph, src, name="m", options=CodegenOptions(probe=True, dsp=True))
    except EdgecompError:
        return None
    write_firmware(src, load_target("host"), "m")
    built = build(src, "host", host=True, build_dir=work / "san", host_cflags=SANITIZE)
    t_in = graph.t(graph.inputs[0])
    man = {"inputs": [{"shape": list(t_in.shape), "dtype": t_in.dtype}], "name": graph.name}
    io_in = man["inputs"][0]
    n = 3
    shape = [n] + list(io_in["shape"][1:])
    x = (rng.integers(-128, 128, size=shape) if io_in["dtype"] != "float32"
         else rng.standard_normal(shape) * 4).astype(io_in["dtype"])
    run = work / "io"
    run.mkdir(exist_ok=True)
    x.tofile(run / INPUT_FILE)
    fr = run_firmware(built.elf, None, run, timeout=120)  # a sanitizer report exits non-zero: ToolError
    assert "runtime error" not in fr.stdout and "AddressSanitizer" not in fr.stdout, fr.stdout[-2000:]
    return man["name"]


def test_fuzz_corpus_builds_and_runs_clean_under_ubsan_and_asan(tmp_path, tflite_builder, monkeypatch):
    monkeypatch.setenv("EC_CORPUS_DIR", str(tmp_path))
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
    cases = [(f"onnx: {d}", b, ".onnx") for d, b in _corpus_onnx(8)]
    cases += [(d, b, ".tflite") for d, b in _bound_tflite(tflite_builder)]
    rng = np.random.default_rng(0)
    ran = []
    for i, (desc, data, suffix) in enumerate(cases):
        work = tmp_path / f"c{i}"
        work.mkdir()
        model = work / f"m{suffix}"
        model.write_bytes(data)
        if _run_sanitized(model, work, rng) is not None:
            ran.append(desc)
    assert len(ran) == len(cases), ran  # every case was accepted, built and run
    # beyond the bound: refused by the frontend (with the bound lifted, the sanitizer stops these runs)
    for i, (desc, data) in enumerate(_review_tflite(tflite_builder)):
        work = tmp_path / f"r{i}"
        work.mkdir()
        (work / "m.tflite").write_bytes(data)
        assert _run_sanitized(work / "m.tflite", work, rng) is None, desc
