"""Whole models on emulated microcontrollers (QEMU), compared with the references
users trust: ONNX Runtime for the PyTorch/ONNX path, TensorFlow Lite Micro for
TFLite files, and the Cortex-M4 firmware for the same model on a Cortex-M0.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgecomp import api

pytestmark = [pytest.mark.toolchain, pytest.mark.qemu,
              pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                 reason="needs arm-none-eabi-gcc and qemu-system-arm (bash scripts/install.sh)")]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's CNN, trained briefly, as an int8 QDQ ONNX file plus 24 held-out digits."""
    import torch

    from edgecomp.demo import digits_split, make_cnn, train

    torch.set_num_threads(2)
    xtr, ytr, xte, yte = digits_split(0)
    torch.manual_seed(0)
    model = train(make_cnn(), xtr, ytr, epochs=10, seed=0, verbose=False)
    work = tmp_path_factory.mktemp("digits")
    qdq = work / "model.int8.onnx"
    man = api.compile_model(model, "cortex-m4", work / "m4", example_input=torch.from_numpy(xte[:1]),
                            calib=xtr[:200], keep_onnx=qdq)
    return {"work": work, "qdq": qdq, "m4": work / "m4", "manifest": man, "x": xte[:24], "y": yte[:24]}


@pytest.mark.slow
def test_digits_firmware_under_qemu_matches_onnxruntime(digits):
    from edgecomp.demo import ort_outputs

    x = digits["x"]
    pred = api.run_bundle(digits["m4"], x, progress=False)
    oq = digits["manifest"]["outputs"][0]["quantization"]
    scale, zp = oq["scale"][0], oq["zero_point"][0]
    ort = np.round(ort_outputs(digits["qdq"], x) / scale).astype(np.int32) + zp
    fw = pred.outputs.reshape(len(x), -1).astype(np.int32)
    assert fw.shape == ort.shape == (len(x), 10)
    # integer-only lowering vs ORT's float-rescaling QDQ reference: a few LSB at most, same decisions
    assert np.abs(fw - ort).max() <= 3, np.abs(fw - ort).max()
    assert (fw.argmax(1) == ort.argmax(1)).mean() >= 0.95
    assert (fw.argmax(1) == digits["y"]).mean() >= 0.8  # a trained model, not noise
    res = pred.result
    assert res.unit == "systick" and res.instructions_per_inference > digits["manifest"]["macs"]


@pytest.mark.slow
def test_digits_on_cortex_m0_microbit_fits_16k_and_equals_cortex_m4(digits):
    x = digits["x"][:8]
    m0 = api.compile_model(str(digits["qdq"]), "cortex-m0", digits["work"] / "m0")
    assert m0["target"] == "cortex-m0"
    assert m0["ram_bytes"] < 16 * 1024 and m0["ram_bytes"] == sum(m0["ram"].values())
    got = api.run_bundle(digits["work"] / "m0", x, progress=False)
    want = api.run_bundle(digits["m4"], x, progress=False)
    assert got.result.machine == "microbit" and want.result.machine == "mps2-an386"
    np.testing.assert_array_equal(got.outputs, want.outputs)


@pytest.mark.parametrize("model", ["ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"])
def test_mlperf_tiny_under_qemu_bit_exact_with_tflm(tmp_path, mlperf_dir, model):
    from edgecomp.reference import tflm_run

    path = mlperf_dir / f"{model}.tflite"
    man = api.compile_model(str(path), "cortex-m4", tmp_path / "b")
    shape = tuple(man["inputs"][0]["shape"])
    x = np.random.default_rng(11).integers(-128, 128, size=(5,) + shape[1:], dtype=np.int8)
    got = api.run_bundle(tmp_path / "b", x, progress=False)
    want = tflm_run(path, x)
    np.testing.assert_array_equal(got.outputs.reshape(want.shape), want)
    assert len(np.unique(want)) > 1
    assert got.result.instructions_per_inference > man["macs"]


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m33", "cortex-m55"])
@pytest.mark.parametrize("model", ["ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"])
def test_mlperf_tiny_bit_exact_on_armv8m_cores(tmp_path, mlperf_dir, model, target):
    """Cortex-M33 (mps2-an505) and Cortex-M55 (mps3-an547) with the kernels they get by default: the DSP
    kernels on the M33, the Helium (MVE) kernels on the M55 (fewer instructions than MACs there)."""
    from edgecomp.reference import tflm_run

    path = mlperf_dir / f"{model}.tflite"
    man = api.compile_model(str(path), target, tmp_path / "b")
    assert man["options"]["kernels"] == "auto" and man["target_info"]["dsp"]
    shape = tuple(man["inputs"][0]["shape"])
    x = np.random.default_rng(12).integers(-128, 128, size=(3,) + shape[1:], dtype=np.int8)
    got = api.run_bundle(tmp_path / "b", x, progress=False)
    assert got.result.machine == {"cortex-m33": "mps2-an505", "cortex-m55": "mps3-an547"}[target]
    want = tflm_run(path, x)
    np.testing.assert_array_equal(got.outputs.reshape(want.shape), want)
    assert len(np.unique(want)) > 1
    helium = [l["name"] for l in man["layers"] if "_mve" in l["kernel"]]
    if target == "cortex-m55":
        assert man["target_info"]["mve"] and len(helium) >= 2
        assert got.result.instructions_per_inference < 0.6 * man["macs"]
    else:
        assert not helium and got.result.instructions_per_inference > man["macs"]
