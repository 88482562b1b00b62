"""Every op, compiled to C for the host and run, against ONNX Runtime.

float32: within 1e-5 relative; int8 (QDQ from ORT's quantizer): within 1 LSB.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F


from edgecomp import api  # noqa: E402
from edgecomp.compress.quantize import quantize_onnx, reference_session  # noqa: E402
from edgecomp.frontends.torch import export_onnx  # noqa: E402

torch.set_num_threads(1)


class Op(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(4, 6, 3, stride=1, padding=1)
        self.conv_s2 = nn.Conv2d(4, 6, 3, stride=2, padding=(0, 1))
        self.conv_dil = nn.Conv2d(4, 6, 3, padding=2, dilation=2)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.dw_m2 = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4)
        self.fc = nn.Linear(4 * 6 * 6, 10)
        self.pw = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        k = self.kind
        if k == "conv":
            return self.conv(x)
        if k == "conv_stride2_asym_pad":
            return self.conv_s2(x)
        if k == "conv_dilated":
            return self.conv_dil(x)
        if k == "depthwise":
            return self.dw(x)
        if k == "depthwise_mult2_stride2":
            return self.dw_m2(x)
        if k == "gemm_flatten":
            return self.fc(torch.flatten(x, 1))
        if k == "relu":
            return torch.relu(self.pw(x))
        if k == "clip":
            return torch.clamp(self.pw(x), -0.5, 0.75)
        if k == "maxpool":
            return F.max_pool2d(self.pw(x), 3, 2, padding=1)
        if k == "avgpool":
            return F.avg_pool2d(self.pw(x), 2)
        if k == "global_avgpool":
            return F.adaptive_avg_pool2d(self.pw(x), 1)
        if k == "add":
            return self.pw(x) + x
        if k == "concat":
            return torch.cat([x, self.pw(x)], 1)
        if k == "softmax":
            return torch.softmax(self.fc(torch.flatten(x, 1)), -1)
        raise ValueError(k)


KINDS = ["conv", "conv_stride2_asym_pad", "conv_dilated", "depthwise", "depthwise_mult2_stride2", "gemm_flatten",
         "relu", "clip", "maxpool", "avgpool", "global_avgpool", "add", "concat", "softmax"]


def _ort(path, x):
    s = reference_session(path)  # the QDQ graph as written (see reference_session's docstring)
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 4, 6, 6)).astype(np.float32), rng.standard_normal((8, 4, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_host_build_matches_onnxruntime(tmp_path, kind, data):
    _, x = data
    torch.manual_seed(0)
    path = export_onnx(Op(kind), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    api.compile_model(path, "host", tmp_path / "b", precision="float32")
    got = api.run_bundle(tmp_path / "b", x, emulate=False).outputs_float
    want = _ort(path, x)
    np.testing.assert_allclose(got.reshape(want.shape) if got.size == want.size else got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_int8_host_build_within_one_lsb_of_onnxruntime(tmp_path, kind, data):
    calib, x = data
    torch.manual_seed(0)
    path = export_onnx(Op(kind), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    q = quantize_onnx(path, calib, tmp_path / "q.onnx", progress=False)
    man = api.compile_model(q, "host", tmp_path / "b")
    got = api.run_bundle(tmp_path / "b", x, emulate=False)
    want_f = _ort(q, x)
    out = man["outputs"][0]
    if out["dtype"] == "float32":
        np.testing.assert_allclose(got.outputs_float.reshape(want_f.shape), want_f, atol=1e-5, rtol=1e-5)
        return
    qs = out["quantization"]
    want = np.rint(want_f / qs["scale"][0]).astype(np.int32) + qs["zero_point"][0]
    g = got.outputs.astype(np.int32)
    assert np.abs(g.reshape(want.shape) - want).max() <= 1
