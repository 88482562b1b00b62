"""int16 activations through to C (16x8: int16 activations symmetric with zero point 0, int8
per-channel symmetric weights, int64 accumulators): single layers and the digits CNN on the
host and under QEMU against ONNX Runtime on the same QDQ file and against the reference
interpreter (edgecomp.interp, 0 LSB), and the Q15 power-of-two rewrite compiled to shift-only
layers."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecomp import api
from edgecomp.compress.fixedpoint import to_power_of_two
from edgecomp.compress.quantize import quantize_onnx
from edgecomp.demo import digits_split, make_cnn, ort_outputs, train
from edgecomp.frontends.onnx import from_onnx
from edgecomp.frontends.torch import export_onnx
from layer_zoo import Layer
from onnx_graphs import assert_c_equals_interpreter, lsb, output_scale

torch.set_num_threads(2)


KINDS = ["conv", "conv_relu_stride2", "conv_dilated", "depthwise", "depthwise_mult2_stride2", "fc_flatten", "fc_clip",
         "maxpool", "add_relu", "avgpool_3x3_s2_pad", "global_avgpool", "concat"]
INT16_OPS = {"conv": "conv2d", "conv_relu_stride2": "conv2d", "conv_dilated": "conv2d",
             "depthwise": "depthwise_conv2d",
             "depthwise_mult2_stride2": "depthwise_conv2d", "fc_flatten": "fully_connected",
             "fc_clip": "fully_connected", "maxpool": "max_pool2d", "add_relu": "add", "avgpool_3x3_s2_pad": "avg_pool2d",
             "global_avgpool": "avg_pool2d", "concat": "concat"}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 4, 6, 6)).astype(np.float32), rng.standard_normal((16, 4, 6, 6)).astype(np.float32)


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", KINDS)
def test_single_int16_layer_c_equals_interpreter_within_one_lsb_of_onnxruntime(tmp_path, kind, data):
    calib, x = data
    torch.manual_seed(0)
    f = export_onnx(Layer(kind).eval(), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    q = quantize_onnx(f, calib, tmp_path / "m.int16.onnx", progress=False, activations="int16")
    g = from_onnx(q)
    ops = {n.op: n for n in g.nodes}
    assert INT16_OPS[kind] in ops and g.tensors[ops[INT16_OPS[kind]].outputs[0]].dtype == "int16"
    seq = [n.op for n in g.nodes if n.op != "reshape"]
    assert seq[0] == "quantize" and seq[-1] == "dequantize"  # float input and output: the C API stays float
    assert "clamp" not in ops and "dequantize" not in [n.op for n in g.nodes][:-1]  # all int16, relu/clip fused
    man = api.compile_model(q, "host", tmp_path / "b")
    assert (tmp_path / "b" / "ec_kernels_s16.c").is_file() and "ec_kernels_s16.c" in man["files"]
    assert man["inputs"][0]["dtype"] == "float32" and man["outputs"][0]["dtype"] == "float32"
    got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False).outputs_float
    want = ort_outputs(q, x)
    assert lsb(got, want, output_scale(q)) <= 1.0 + 1e-3
    assert lsb(assert_c_equals_interpreter(got, g, x), want, output_scale(q)) <= 1.0 + 1e-3


def test_int16_tensors_are_planned_two_bytes_per_element(tmp_path, data):
    from edgecomp.backends.c import generate

    calib, _ = data
    torch.manual_seed(0)
    f = export_onnx(Layer("conv").eval(), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    q = quantize_onnx(f, calib, tmp_path / "m.int16.onnx", progress=False, activations="int16")
    g = from_onnx(q)
    info = generate(g, tmp_path / "c")
    for t in g.activations():
        assert info.plan.sizes[t.name] == t.size * {"int16": 2, "float32": 4}[t.dtype]
    assert any(t.dtype == "int16" for t in g.activations())


@pytest.mark.toolchain
def test_int8_bundles_do_not_carry_the_int16_kernels(tmp_path, data):
    calib, _ = data
    torch.manual_seed(0)
    f = export_onnx(Layer("conv").eval(), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    q = quantize_onnx(f, calib, tmp_path / "m.int8.onnx", progress=False)
    man = api.compile_model(q, "host", tmp_path / "b")
    assert not (tmp_path / "b" / "ec_kernels_s16.c").exists() and "ec_kernels_s16.c" not in man["files"]
    assert "ec_kernels_s16.h" not in (tmp_path / "b" / "model.c").read_text()


# --------------------------------------------------------------------------- the digits CNN
@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    xtr, ytr, xte, yte = digits_split(0)
    torch.manual_seed(0)
    model = train(make_cnn(), xtr, ytr, epochs=5, verbose=False)
    d = tmp_path_factory.mktemp("cnn16")
    q = d / "cnn.int16.onnx"
    man = api.compile_model(model, "host", d / "host", example_input=torch.from_numpy(xte[:1]), calib=xtr[:100],
                            precision="int16", keep_onnx=q)
    host = api.run_bundle(d / "host", xte, emulate=False, progress=False)
    return {"model": model, "q": q, "man": man, "host": host, "dir": d, "xtr": xtr, "xte": xte, "yte": yte}


@pytest.mark.toolchain
def test_cnn_int16_host_matches_onnxruntime(cnn):
    man, xte = cnn["man"], cnn["xte"]
    assert man["options"]["precision"] == "int16"
    ops = [layer["op"] for layer in man["layers"]]
    assert ops.count("conv2d") == 3 and "depthwise_conv2d" in ops and "fully_connected" in ops
    got = cnn["host"].outputs_float.reshape(len(xte), -1)
    want = ort_outputs(cnn["q"], xte)
    assert lsb(got, want, output_scale(cnn["q"])) <= 2.0 + 1e-3
    assert lsb(assert_c_equals_interpreter(got, from_onnx(cnn["q"]), xte), want, output_scale(cnn["q"])) <= 2.0 + 1e-3
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert (got.argmax(1) == cnn["yte"]).mean() >= 0.9


@pytest.mark.toolchain
@pytest.mark.qemu
def test_cnn_int16_under_qemu_equals_the_host_build(cnn):
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.fail("needs arm-none-eabi-gcc and qemu-system-arm (bash scripts/install.sh)")
    d, x = cnn["dir"], cnn["xte"][:6]
    man = api.compile_model(cnn["q"], "cortex-m4", d / "m4")
    assert man["flash_bytes"] > 0
    got = api.run_bundle(d / "m4", x, progress=False).outputs
    np.testing.assert_array_equal(got, cnn["host"].outputs[:len(x)])


@pytest.mark.toolchain
@pytest.mark.qemu
def test_cnn_q15_power_of_two_compiles_to_shift_only_layers(cnn):
    d, xte = cnn["dir"], cnn["xte"]
    info = to_power_of_two(cnn["q"], d / "cnn.q15.onnx")
    assert info["all_power_of_two"]
    man = api.compile_model(d / "cnn.q15.onnx", "host", d / "q15")
    weights = (d / "q15" / "weights.c").read_text()
    model_c = (d / "q15" / "model.c").read_text()
    assert "_multiplier[" not in weights  # every int16 layer is shift-only: no multiplier array in flash
    assert model_c.count(".multiplier = NULL") == 5 and "shift only" in model_c
    full = (cnn["dir"] / "host" / "weights.c").read_text()
    assert len(re.findall(r"_multiplier\[", full)) == 5
    got = api.run_bundle(d / "q15", xte, emulate=False, progress=False).outputs_float.reshape(len(xte), -1)
    want = ort_outputs(d / "cnn.q15.onnx", xte)
    # power-of-two scales: ORT's float arithmetic is exact, and the kernels round ties to even as it does
    assert lsb(got, want, output_scale(d / "cnn.q15.onnx")) <= 1.0 + 1e-3
    mine = assert_c_equals_interpreter(got, from_onnx(d / "cnn.q15.onnx"), xte)
    assert lsb(mine, want, output_scale(d / "cnn.q15.onnx")) <= 1.0 + 1e-3
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert man["flash_bytes"] < cnn["man"]["flash_bytes"]
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):  # the shift-only kernels on the M4
        api.compile_model(d / "cnn.q15.onnx", "cortex-m4", d / "q15m4")
        np.testing.assert_array_equal(api.run_bundle(d / "q15m4", xte[:4], progress=False).outputs,
                                      api.run_bundle(d / "q15", xte[:4], emulate=False, progress=False).outputs)


@pytest.mark.toolchain
def test_cli_compile_precision_int16(cnn, tmp_path):
    f = export_onnx(cnn["model"], torch.from_numpy(cnn["xte"][:1]), tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", cnn["xtr"][:50])
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compile", str(f), "--target", "host",
                        "--calib", str(tmp_path / "calib.npy"), "--precision", "int16", "-o", str(tmp_path / "b")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "ec_kernels_s16.c").is_file()
    assert "ec_conv2d_s16(" in (tmp_path / "b" / "model.c").read_text()
    x = cnn["xte"][:20]
    got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False).outputs_float.reshape(len(x), -1)
    assert (got.argmax(1) == cnn["host"].outputs_float.reshape(len(cnn["xte"]), -1)[:20].argmax(1)).mean() >= 0.9


# --------------------------------------------------------------------------- the C requantization
@pytest.mark.toolchain
def test_c_requantization_is_the_documented_rounding(tmp_path):
    """ec_requantize_acc_s16 / ec_shift_acc_s16 against exact integers: y = acc * m / 2^n rounded to nearest,
    ties to even, n = 31 - shift, saturated to int16; the shift-only path equals the multiplier path at m = 2^30."""
    from edgecomp.backends.c.kernels.catalogue import bundle_names, write_kernel_files

    write_kernel_files(tmp_path, bundle_names("reference", "s16"))  # as in a bundle
    (tmp_path / "t.c").write_text(r'''
#include <stdio.h>
#include <inttypes.h>
#include "ec_kernels_s16.h"
int main(void) {
    long long acc; long m, s;
    while (scanf("%lld %ld %ld", &acc, &m, &s) == 3)
        printf("%" PRId32 " %" PRId32 "\n", ec_requantize_acc_s16(acc, (int32_t)m, (int32_t)s),
               m == (1L << 30) ? ec_shift_acc_s16(acc, (int32_t)s) : 0);
    return 0;
}
''')
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp_path / "t"), str(tmp_path / "t.c"),
                    str(tmp_path / "ec_kernels_s16.c"), str(tmp_path / "ec_kernels.c"), "-lm"], check=True)
    rng = np.random.default_rng(1)
    cases = []
    for shift in list(range(-31, 31)):
        for m in (1 << 30, (1 << 31) - 1, 1518500250, int(rng.integers(1 << 30, 1 << 31))):
            for acc in (0, 1, -1, 2, -2, 3, -3, (1 << 40) + 12345, -(1 << 40) - 12345, (1 << 47), -(1 << 47),
                        *rng.integers(-(1 << 34), 1 << 34, 6), *rng.integers(-(1 << 20), 1 << 20, 6),
                        *(int(v) << (-shift + 1) for v in rng.integers(-40000, 40000, 3) if shift <= 0),
                        *((int(v) << (1 - shift)) + (1 << -shift) for v in (-3, -2, 2, 3) if shift <= 0)):
                cases.append((int(acc), int(m), shift))
    inp = "\n".join(f"{a} {m} {s}" for a, m, s in cases) + "\n"
    out = subprocess.run([str(tmp_path / "t")], input=inp, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    for (acc, m, s), line in zip(cases, out):
        n = 31 - s
        x = acc * m
        q, r = x >> n, x & ((1 << n) - 1)
        q += 1 if r > (1 << (n - 1)) or (r == (1 << (n - 1)) and q & 1) else 0
        want = min(max(q, -32768), 32767)
        got, got_shift = (int(v) for v in line.split())
        assert min(max(got, -32768), 32767) == want, (acc, m, s, got, want)
        if m == 1 << 30:
            assert got_shift == got, (acc, s, got_shift, got)


@pytest.mark.toolchain
def test_ops_without_int16_kernels_stay_float_and_layers_kept_float(tmp_path, data):
    """softmax has no int16 kernel: it runs in float between its dequantize and quantize; --keep-float
    layers of an int16 model likewise (mixed precision)."""
    calib, x = data

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(4, 6, 3, padding=1)
            self.fc = nn.Linear(6 * 36, 10)

        def forward(self, x):
            return torch.softmax(self.fc(torch.flatten(self.c(x), 1)), -1)

    torch.manual_seed(0)
    f = export_onnx(Head().eval(), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    for keep, first in (((), "conv2d"), (["/c/Conv"], None)):
        q = quantize_onnx(f, calib, tmp_path / "q.onnx", progress=False, activations="int16", keep_float=keep)
        g = from_onnx(q)
        kinds = [(n.op, g.tensors[n.outputs[0]].dtype) for n in g.nodes]
        assert ("softmax", "float32") in kinds and ("fully_connected", "int16") in kinds
        assert (("conv2d", "int16") in kinds) == (first == "conv2d")
        api.compile_model(q, "host", tmp_path / "b")
        got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False).outputs_float
        want = ort_outputs(q, x)
        assert lsb(got, want, output_scale(q)) <= 1.0 + 1e-3


def test_int16_on_a_raspberry_pi_target_is_one_clear_error(tmp_path, data):
    from edgecomp.errors import UnsupportedError

    torch.manual_seed(0)
    f = export_onnx(Layer("conv").eval(), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError, match="int16"):
        api.compile_model(f, "rpi4", tmp_path / "b", calib=data[0], precision="int16")
    assert not (tmp_path / "b").exists()
