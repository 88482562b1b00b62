"""Mixed precision through to C: chosen layers stay float32 between a dequantize and a
quantize, the rest is int8; the firmware matches ONNX Runtime on the same QDQ file."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from edgecomp import api
from edgecomp.demo import digits_split, make_cnn, ort_outputs, train


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    xtr, ytr, xte, yte = digits_split(0)
    torch.manual_seed(0)
    return train(make_cnn(), xtr, ytr, epochs=8, seed=0, verbose=False), xtr, xte


@pytest.mark.parametrize("keep", [["conv2"], ["pw.0", "fc"]])
@pytest.mark.slow
@pytest.mark.toolchain
def test_layers_kept_in_float_run_float_kernels_and_match_onnxruntime(trained, tmp_path, keep):
    model, xtr, xte = trained
    q = tmp_path / "mixed.onnx"
    man = api.compile_model(model, "host", tmp_path / "b", example_input=torch.from_numpy(xte[:1]),
                            calib=xtr[:100], keep_float=keep, keep_onnx=q)
    assert man["options"]["keep_float"] == keep
    g = onnx.load(str(q))
    float_convs = [n.name for n in g.graph.node if n.op_type in ("Conv", "Gemm")
                   and not any(i.endswith("DequantizeLinear_Output") for i in n.input[1:2])]
    assert float_convs and all(any(f"/{k}/" in n or n.startswith(f"/{k}") for k in keep) for n in float_convs)
    ops = [layer["op"] for layer in man["layers"]]
    assert "dequantize" in ops and ops.count("conv2d") + ops.count("fully_connected") >= 3
    x = xte[:40]
    got = api.run_bundle(tmp_path / "b", x, emulate=False).outputs_float.reshape(len(x), -1)
    want = ort_outputs(q, x)
    if man["outputs"][0]["dtype"] == "int8":
        tol = 2 * man["outputs"][0]["quantization"]["scale"][0] + 1e-5
    else:  # a float head after int8 layers: one LSB upstream moves the logits a little
        assert "fc" in keep
        tol = 0.02 * np.abs(want).max()
    assert np.abs(got - want).max() <= tol
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    # the float layer costs flash: more than the all-int8 build
    full = api.compile_model(model, "host", tmp_path / "int8", example_input=torch.from_numpy(xte[:1]),
                             calib=xtr[:100])
    assert "dequantize" not in [layer["op"] for layer in full["layers"]]


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.qemu
def test_mixed_model_runs_under_qemu_on_cortex_m4(trained, tmp_path):
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.fail("needs arm-none-eabi-gcc and qemu-system-arm (bash scripts/install.sh)")
    model, xtr, xte = trained
    q = tmp_path / "mixed.onnx"
    man = api.compile_model(model, "cortex-m4", tmp_path / "m4", example_input=torch.from_numpy(xte[:1]),
                            calib=xtr[:100], keep_float=["conv2"], keep_onnx=q)
    x = xte[:8]
    got = api.run_bundle(tmp_path / "m4", x, progress=False).outputs_float.reshape(len(x), -1)
    scale = man["outputs"][0]["quantization"]["scale"][0]
    assert np.abs(got - ort_outputs(q, x)).max() <= 2 * scale + 1e-5


@pytest.mark.slow
def test_unknown_layer_is_one_clear_message(tmp_path, trained):
    model, xtr, xte = trained
    from edgecomp.frontends.torch import export_onnx
    f = export_onnx(model, torch.from_numpy(xte[:1]), tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", xtr[:20])
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compile", str(f), "--target", "host",
                        "--calib", str(tmp_path / "calib.npy"), "--keep-float", "nope", "-o", str(tmp_path / "b")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nope" in r.stderr and "/conv1/conv1.0/Conv" in r.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
@pytest.mark.toolchain
def test_choose_precision_then_compile_the_mix(trained, tmp_path):
    from edgecomp.compress.mixed import choose_precision, compile_mixed, float_layers
    from edgecomp.demo import digits_split

    model, xtr, xte = trained
    _, _, _, yte = digits_split(0)
    # 2-bit layers cost accuracy, so a 0.5-point budget must promote some layer to float32
    r = choose_precision(model, xtr[:150], xte, yte, max_drop=0.5, options=(2, 32))
    keep = float_layers(r)
    assert keep and r["drop"] <= 0.5
    man = compile_mixed(model, r, "host", tmp_path / "b", example_input=torch.from_numpy(xte[:1]), calib=xtr[:100])
    assert man["options"]["keep_float"] == keep
    assert "dequantize" in [layer["op"] for layer in man["layers"]]
    acc = (api.run_bundle(tmp_path / "b", xte, emulate=False).outputs_float.reshape(len(xte), -1).argmax(1)
           == yte).mean()
    assert acc >= 0.85


@pytest.mark.toolchain
@pytest.mark.slow
def test_mixed_int4_int8_flash_is_what_the_report_predicts(tmp_path):
    """choose_precision under a flash budget mixes int4 and int8 layers; the compiled bundle stores
    the int4 ones packed (two weights a byte), its flash_bytes is within 5 % of the prediction, and the
    firmware's C agrees with ONNX Runtime on the rewritten QDQ model."""
    import torch.nn as nn

    from edgecomp.compress.distill import fit
    from edgecomp.compress.mixed import choose_precision, compile_mixed, fixed_bytes
    from edgecomp.compress.report import onnx_predict
    xtr, ytr, xte, yte = digits_split(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))
    fit(model, xtr, ytr, epochs=4, lr=3e-3, verbose=False)
    ex = torch.from_numpy(xte[:1])
    man8 = api.compile_model(model, "cortex-m4", tmp_path / "int8", example_input=ex, calib=xtr[:100])
    fixed = fixed_bytes(man8["flash_bytes"], model)
    # room for about half the int8 weights' bytes to stay int8: some layers must take 4 bits
    budget = man8["flash_bytes"] - 12_000
    r = choose_precision(model, xtr[:150], xte, yte, max_drop=0.0, options=(4, 8), flash_budget=budget, fixed=fixed)
    chosen = set(r["bits"].values())
    assert chosen == {4, 8} and r["predicted_flash"] <= budget
    q = tmp_path / "mixed.onnx"
    man = compile_mixed(model, r, "cortex-m4", tmp_path / "mixed", example_input=ex, calib=xtr[:100], keep_onnx=q)
    assert abs(man["flash_bytes"] - r["predicted_flash"]) <= 0.05 * man["flash_bytes"]
    assert man["flash_bytes"] < man8["flash_bytes"] - 8_000  # the saving is in flash, not only in the report
    int4 = [layer for layer, b in r["bits"].items() if b == 4]
    kernels = " ".join(layer["kernel"] for layer in man["layers"])
    assert kernels.count("int4 weights") == len(int4)
    x = xte[:60]
    want = onnx_predict(q, x)
    man_h = compile_mixed(model, r, "host", tmp_path / "mixed_host", example_input=ex, calib=xtr[:100])
    got = api.run_bundle(tmp_path / "mixed_host", x, emulate=False).outputs_float.reshape(len(x), -1)
    scale = man_h["outputs"][0]["quantization"]["scale"][0]
    assert np.abs(got - want).max() <= 1 * scale + 1e-6
