"""Models of several inputs and outputs: host C, cortex-m4 firmware (QEMU) and the Raspberry Pi
bundle against ONNX Runtime; the C API (model.h) names every input and output; a one-input model
keeps its API; edgecomp run --input takes an .npz with one array per input name."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecomp import api
from edgecomp.compress.quantize import reference_session

torch.set_num_threads(1)
HAVE_ARM = bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))


class TwoInTwoOut(nn.Module):
    """An image and a feature vector in; class logits and the conv's feature map out."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc2 = nn.Linear(5, 5)
        self.fc = nn.Linear(6 + 5, 4)

    def forward(self, img, vec):
        f = torch.relu(self.conv(img))
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)
        return self.fc(torch.cat([pooled, torch.relu(self.fc2(vec))], 1)), f


def _samples(n, seed):
    rng = np.random.default_rng(seed)
    return {"img": rng.standard_normal((n, 3, 8, 8)).astype(np.float32),
            "vec": rng.standard_normal((n, 5)).astype(np.float32)}


def _ort(path, x):
    s = reference_session(path)
    n = len(x["img"])
    runs = [s.run(None, {k: v[i:i + 1] for k, v in x.items()}) for i in range(n)]
    return {name: np.concatenate([r[j] for r in runs]) for j, name in enumerate(("logits", "features"))}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)

    work = tmp_path_factory.mktemp("multi_io")
    torch.manual_seed(0)
    f = work / "m.onnx"
    torch.onnx.export(TwoInTwoOut().eval(), (torch.zeros(1, 3, 8, 8), torch.zeros(1, 5)), str(f),
                      input_names=["img", "vec"], output_names=["logits", "features"], opset_version=17,
                      dynamo=False)
    cal = _samples(64, 1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= 64:
                return None
            self.i += 1
            return {k: v[self.i - 1:self.i] for k, v in cal.items()}

    q = work / "q.onnx"  # (edgecomp's quantize_onnx calibrates one input: ORT's quantizer, S8S8 as it does)
    quantize_static(str(f), str(q), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return {"work": work, "float": f, "q": q, "x": _samples(6, 2)}


def _dequantize_scale(path, name):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    node = next(n for n in m.graph.node if name in n.output)
    assert node.op_type == "DequantizeLinear"
    return float(inits[node.input[1]])


def _within_one_lsb(qdq, man, got, want):
    for io in man["outputs"]:
        qs = io["quantization"]
        if qs is None:  # the float output of a DequantizeLinear: 1 LSB is its scale
            lsb = _dequantize_scale(qdq, io["name"])
            assert np.abs(got[io["name"]] - want[io["name"]]).max() <= lsb * 1.001, io["name"]
            continue
        w = np.rint(want[io["name"]] / qs["scale"][0]).astype(np.int32) + qs["zero_point"][0]
        g = got[io["name"]].astype(np.int32)
        assert g.shape == w.shape
        assert np.abs(g - w).max() <= 1, io["name"]


@pytest.mark.toolchain
def test_float_host_build_matches_onnxruntime(models, tmp_path):
    man = api.compile_model(models["float"], "host", tmp_path / "b", precision="float32")
    assert [io["name"] for io in man["inputs"]] == ["img", "vec"]
    assert [io["name"] for io in man["outputs"]] == ["logits", "features"]
    got = api.run_bundle(tmp_path / "b", models["x"], emulate=False).outputs_float
    want = _ort(models["float"], models["x"])
    for k in want:
        assert got[k].shape == want[k].shape
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


@pytest.mark.toolchain
def test_int8_host_build_within_one_lsb_and_the_c_api_names_each_tensor(models, tmp_path):
    b = tmp_path / "b"
    man = api.compile_model(models["q"], "host", b)
    got = api.run_bundle(b, models["x"], emulate=False).outputs
    _within_one_lsb(models["q"], man, got, _ort(models["q"], models["x"]))
    # a user's program through ec_run(one pointer per input and output) gives the harness's outputs
    h = (b / "model.h").read_text()
    ctype = {"int8": "int8_t", "float32": "float"}
    ft = ctype[man["outputs"][1]["dtype"]]  # (ORT's quantizer may leave the map that feeds the pool float)
    for decl in ("int8_t *ec_input_img(void);", "int8_t *ec_input_vec(void);", "#define EC_NUM_OUTPUTS 2",
                 f"const {ft} *ec_output_features(void);", "#define EC_INPUT_SIZE_vec 5"):
        assert decl in h
    user = tmp_path / "user.c"
    user.write_text('#include <stdio.h>\n#include "model.h"\n'
                    "static int8_t img[EC_INPUT_SIZE_img], vec[EC_INPUT_SIZE_vec], y[EC_OUTPUT_SIZE_logits];\n"
                    f"static {ft} f[EC_OUTPUT_SIZE_features];\n"
                    "int main(void)\n{\n    for (int i = 0; i < EC_INPUT_SIZE_img; i++) img[i] = (int8_t)(i % 7 - 3);\n"
                    "    for (int i = 0; i < EC_INPUT_SIZE_vec; i++) vec[i] = (int8_t)(20 * i - 40);\n"
                    "    if (ec_run(img, vec, y, f) != 0) return 1;\n"
                    "    for (int i = 0; i < EC_OUTPUT_SIZE_logits; i++) printf(\"%d \", y[i]);\n"
                    "    return 0;\n}\n")
    srcs = [str(user)] + [str(p) for p in b.glob("*.c") if p.name not in ("main.c", "ec_platform.c", "ec_platform_host.c")]
    exe = tmp_path / "user"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I", str(b), *srcs, "-o", str(exe),
                    "-lm"], check=True, capture_output=True)
    printed = [int(v) for v in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    img = (np.arange(192) % 7 - 3).astype(np.int8).reshape(1, 8, 8, 3)
    vec = (20 * np.arange(5) - 40).astype(np.int8).reshape(1, 5)
    from edgecomp.backends.run import run_bundle as run_raw
    want = run_raw(b, [img, vec], emulate=False, progress=False).outputs[0]
    assert printed == want.reshape(-1).tolist()


@pytest.mark.toolchain
def test_one_input_model_keeps_its_api(models, tmp_path):
    f = tmp_path / "one.onnx"
    torch.onnx.export(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), (torch.zeros(1, 12),), str(f),
                      input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    api.compile_model(f, "host", tmp_path / "b", precision="float32")
    h = (tmp_path / "b" / "model.h").read_text()
    assert "int ec_run(const ec_in_t *in, ec_out_t *out);" in h and "EC_NUM_INPUTS" not in h


@pytest.mark.toolchain
def test_cli_run_takes_an_npz_of_named_inputs(models, tmp_path):
    from edgecomp.cli import main

    b = tmp_path / "b"
    api.compile_model(models["q"], "host", b)
    x = models["x"]
    np.savez(tmp_path / "in.npz", vec=x["vec"], img=x["img"])
    assert main(["run", str(b), "--host", "--input", str(tmp_path / "in.npz"), "--output",
                 str(tmp_path / "out.npz")]) == 0
    got = np.load(tmp_path / "out.npz")
    want = api.run_bundle(b, x, emulate=False).outputs
    assert sorted(got.files) == ["features", "logits"]
    for k in want:
        assert np.array_equal(got[k], want[k])
    np.savez(tmp_path / "half.npz", img=x["img"])
    assert main(["run", str(b), "--host", "--input", str(tmp_path / "half.npz")]) == 2


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_ARM, reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_int8_cortex_m4_under_qemu_equals_host(models, tmp_path):
    man = api.compile_model(models["q"], "cortex-m4", tmp_path / "m4")
    api.compile_model(models["q"], "host", tmp_path / "host")
    x = {k: v[:3] for k, v in models["x"].items()}
    fw = api.run_bundle(tmp_path / "m4", x, progress=False)
    host = api.run_bundle(tmp_path / "host", x, emulate=False)
    for k in host.outputs:
        assert np.array_equal(fw.outputs[k], host.outputs[k])
    _within_one_lsb(models["q"], man, fw.outputs, _ort(models["q"], x))
    assert fw.result.instructions_per_inference > 0


def test_rpi4_bundle_runs_both_outputs_like_onnxruntime(models, tmp_path):
    man = api.compile_model(models["q"], "rpi4", tmp_path / "pi")
    assert [io["name"] for io in man["inputs"]] == ["img", "vec"] and len(man["outputs"]) == 2
    x = models["x"]
    np.savez(tmp_path / "in.npz", **x)
    subprocess.run([sys.executable, str(tmp_path / "pi" / "run.py"), str(tmp_path / "in.npz"), "-o",
                    str(tmp_path / "out")], check=True, capture_output=True)
    want = _ort(models["q"], x)
    for k in want:  # the Pi runs the QDQ graph with ORT's own kernels: the same model, not bit-equal
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{k}.npy"), want[k], atol=0.1)
