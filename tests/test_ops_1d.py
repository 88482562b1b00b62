"""1-D layers (Conv1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d) lowered on the 2-D kernels with
H = 1, compiled to C for the host and run, against ONNX Runtime: float32 within 1e-5, int8 (QDQ
from ORT's quantizer, run as written) within 1 LSB; the IR moves no data between 1-D layers; a
cortex-m4 firmware under QEMU gives the host build's outputs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecomp import api
from edgecomp.compress.quantize import quantize_onnx
from edgecomp.demo import ort_outputs
from edgecomp.frontends.onnx import from_onnx
from edgecomp.frontends.torch import export_onnx

torch.set_num_threads(1)
C, L = 4, 16


class Layer1d(nn.Module):
    """One 1-D layer per kind, input [N, 4, 16] (``nlc``: [N, 16, 4], transposed by the model)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv1d(C, 6, 3, padding=1)
        self.conv_s2d2 = nn.Conv1d(C, 6, 3, stride=2, dilation=2, padding=2)
        self.conv_k5_valid = nn.Conv1d(C, 5, 5, stride=3)
        self.dw = nn.Conv1d(C, C, 3, padding=1, groups=C)
        self.dw_m2 = nn.Conv1d(C, 2 * C, 3, stride=2, padding=1, groups=C)
        self.pw = nn.Conv1d(C, C, 1)
        self.bn = nn.BatchNorm1d(6)
        self.fc = nn.Linear(6 * L, 7)
        with torch.no_grad():  # a batch norm that does something
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        k = self.kind
        if k == "conv":
            return self.conv(x)
        if k == "conv_stride2_dilated":
            return self.conv_s2d2(x)
        if k == "conv_k5_stride3_valid":
            return self.conv_k5_valid(x)
        if k == "depthwise":
            return self.dw(x)
        if k == "depthwise_mult2_stride2":
            return self.dw_m2(x)
        if k == "conv_bn_relu_flatten_fc":
            return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))
        if k == "maxpool":
            return F.max_pool1d(self.pw(x), 3, 2, padding=1)
        if k == "avgpool":
            return F.avg_pool1d(self.pw(x), 2)
        if k == "avgpool_3_s2_pad":
            return F.avg_pool1d(self.pw(x), 3, 2, padding=1, count_include_pad=False)
        if k == "adaptive_avgpool":
            return torch.flatten(F.adaptive_avg_pool1d(torch.relu(self.conv(x)), 1), 1)
        if k == "nlc_input":  # [N, L, C] data, transposed in the model: a relabelling, no copy
            return torch.relu(self.conv(x.transpose(1, 2)))
        raise ValueError(k)


KINDS = ["conv", "conv_stride2_dilated", "conv_k5_stride3_valid", "depthwise", "depthwise_mult2_stride2",
         "conv_bn_relu_flatten_fc", "maxpool", "avgpool", "avgpool_3_s2_pad", "adaptive_avgpool", "nlc_input"]


def _shape(kind, n):
    return (n, L, C) if kind == "nlc_input" else (n, C, L)


def _export(kind, path):
    torch.manual_seed(0)
    return export_onnx(Layer1d(kind), torch.zeros(_shape(kind, 1)), path)


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", KINDS)
def test_float32_host_build_matches_onnxruntime(tmp_path, kind):
    x = np.random.default_rng(1).standard_normal(_shape(kind, 6)).astype(np.float32)
    path = _export(kind, tmp_path / "m.onnx")
    api.compile_model(path, "host", tmp_path / "b", precision="float32")
    got = api.run_bundle(tmp_path / "b", x, emulate=False).outputs_float
    want = ort_outputs(path, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", KINDS)
def test_int8_host_build_within_one_lsb_of_onnxruntime(tmp_path, kind):
    rng = np.random.default_rng(0)
    calib = rng.standard_normal(_shape(kind, 64)).astype(np.float32)
    x = rng.standard_normal(_shape(kind, 8)).astype(np.float32)
    q = quantize_onnx(_export(kind, tmp_path / "m.onnx"), calib, tmp_path / "q.onnx", progress=False)
    man = api.compile_model(q, "host", tmp_path / "b")
    got = api.run_bundle(tmp_path / "b", x, emulate=False)
    want_f = ort_outputs(q, x)
    out = man["outputs"][0]
    assert got.outputs.shape == want_f.shape
    if out["dtype"] == "float32":
        np.testing.assert_allclose(got.outputs_float, want_f, atol=1e-5, rtol=1e-5)
        return
    qs = out["quantization"]
    want = np.rint(want_f / qs["scale"][0]).astype(np.int32) + qs["zero_point"][0]
    assert np.abs(got.outputs.astype(np.int32) - want).max() <= 1


class DSCNN1d(nn.Module):
    """A small 1-D depthwise-separable CNN (keyword-spotting shape: 10 features x 49 frames)."""

    def __init__(self, ch=16):
        super().__init__()
        layers = [nn.Conv1d(10, ch, 5, stride=2, padding=2), nn.BatchNorm1d(ch), nn.ReLU()]
        for _ in range(2):
            layers += [nn.Conv1d(ch, ch, 3, padding=1, groups=ch), nn.BatchNorm1d(ch), nn.ReLU(),
                       nn.Conv1d(ch, ch, 1), nn.BatchNorm1d(ch), nn.ReLU()]
        layers += [nn.MaxPool1d(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(ch, 12)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def dscnn(tmp_path_factory):
    work = tmp_path_factory.mktemp("dscnn1d")
    torch.manual_seed(0)
    f = export_onnx(DSCNN1d().eval(), torch.zeros(1, 10, 49), work / "m.onnx")
    rng = np.random.default_rng(0)
    q = quantize_onnx(f, rng.standard_normal((64, 10, 49)).astype(np.float32), work / "q.onnx", progress=False)
    return {"work": work, "float": f, "q": q, "x": rng.standard_normal((3, 10, 49)).astype(np.float32)}


def test_1d_layers_move_no_data_and_the_input_is_declared_channels_last(dscnn):
    """[N, C, L] tensors are held as [N, 1, L, C] from the graph input on: no transpose anywhere."""
    for path in (dscnn["float"], dscnn["q"]):
        g = from_onnx(path)
        assert [n.op for n in g.nodes if n.op == "transpose"] == []
        assert g.tensors[g.inputs[0]].shape == (1, 1, 49, 10)
        assert g.meta["io_layouts"] == {g.inputs[0]: "NCW"}
        assert sum(n.op in ("conv2d", "depthwise_conv2d") for n in g.nodes) == 5


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_dscnn1d_cortex_m4_under_qemu_equals_host_and_onnxruntime(dscnn):
    work, x = dscnn["work"], dscnn["x"]
    man = api.compile_model(dscnn["q"], "cortex-m4", work / "m4")
    assert man["inputs"][0]["source_layout"] == "NCW" and man["inputs"][0]["shape"] == [1, 1, 49, 10]
    api.compile_model(dscnn["q"], "host", work / "host")
    fw = api.run_bundle(work / "m4", x, progress=False)
    host = api.run_bundle(work / "host", x, emulate=False)
    assert np.array_equal(fw.outputs, host.outputs)
    qs = man["outputs"][0]["quantization"]
    want = np.rint(ort_outputs(dscnn["q"], x) / qs["scale"][0]).astype(np.int32) + qs["zero_point"][0]
    assert np.abs(fw.outputs.astype(np.int32) - want).max() <= 1
    assert fw.result.instructions_per_inference > 0


@pytest.mark.toolchain
def test_cli_run_takes_one_ncl_sample_for_a_1d_bundle(dscnn, tmp_path):
    """`edgecomp run --input` takes the user's [C, L] sample (or [N, C, L]) and gives api.run_bundle's outputs."""
    from edgecomp.cli import main

    b = tmp_path / "host"
    api.compile_model(dscnn["q"], "host", b)
    np.save(tmp_path / "one.npy", dscnn["x"][0])
    assert main(["run", str(b), "--host", "--input", str(tmp_path / "one.npy"), "--output",
                 str(tmp_path / "out.npy")]) == 0
    want = api.run_bundle(b, dscnn["x"][:1], emulate=False).outputs
    assert np.array_equal(np.load(tmp_path / "out.npy").reshape(want.shape), want)


@pytest.mark.toolchain
def test_batch2_model_host_build_matches_onnxruntime(tmp_path):
    """A model exported with batch 2: one inference holds both sequences ([2, 1, L, C] in the C)."""
    import onnxruntime as ort

    from edgecomp.backends.run import run_bundle

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(C, 6, 3, padding=1, stride=2), nn.ReLU(), nn.MaxPool1d(2),
                      nn.Conv1d(6, 6, 3, groups=6, padding=1), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                      nn.Linear(6, 3)).eval()
    p = export_onnx(m, torch.zeros(2, C, L), tmp_path / "b2.onnx")
    x = np.random.default_rng(3).standard_normal((2, C, L)).astype(np.float32)
    want = ort.InferenceSession(str(p)).run(None, {"input": x})[0]
    man = api.compile_model(p, "host", tmp_path / "b", precision="float32")
    assert man["inputs"][0]["shape"] == [2, 1, L, C]
    got = run_bundle(tmp_path / "b", np.ascontiguousarray(x.transpose(0, 2, 1))[:, None], emulate=False,
                     progress=False).outputs
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def test_info_shows_the_users_ncl_input(dscnn, capsys):
    import json

    from edgecomp.info import model_info

    assert model_info(dscnn["q"], as_json=True) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][0]["shape"] == [1, 10, 49] and info["inputs"][0]["layout"] == "NCW"
