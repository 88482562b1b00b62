"""Every op, compiled to C for the host and run, against ONNX Runtime.

float32: within 1e-5 relative; int8 (QDQ from ORT's quantizer): within 1 LSB.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch


from edgecomp import api  # noqa: E402
from edgecomp.demo import ort_outputs  # noqa: E402  (ORT running the QDQ graph as written)
from layer_zoo import Layer  # noqa: E402
from edgecomp.compress.quantize import quantize_onnx  # noqa: E402
from edgecomp.frontends.torch import export_onnx  # noqa: E402

torch.set_num_threads(1)


KINDS = ["conv", "conv_stride2_asym_pad", "conv_dilated", "depthwise", "depthwise_mult2_stride2", "gemm_flatten",
         "relu", "clip", "maxpool", "avgpool", "global_avgpool", "add", "concat", "softmax"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 4, 6, 6)).astype(np.float32), rng.standard_normal((8, 4, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.toolchain
def test_float32_host_build_matches_onnxruntime(tmp_path, kind, data):
    _, x = data
    torch.manual_seed(0)
    path = export_onnx(Layer(kind), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    api.compile_model(path, "host", tmp_path / "b", precision="float32")
    got = api.run_bundle(tmp_path / "b", x, emulate=False).outputs_float
    want = ort_outputs(path, x)
    np.testing.assert_allclose(got.reshape(want.shape) if got.size == want.size else got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.toolchain
def test_int8_host_build_within_one_lsb_of_onnxruntime(tmp_path, kind, data):
    calib, x = data
    torch.manual_seed(0)
    path = export_onnx(Layer(kind), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    q = quantize_onnx(path, calib, tmp_path / "q.onnx", progress=False)
    man = api.compile_model(q, "host", tmp_path / "b")
    got = api.run_bundle(tmp_path / "b", x, emulate=False)
    want_f = ort_outputs(q, x)
    out = man["outputs"][0]
    if out["dtype"] == "float32":
        np.testing.assert_allclose(got.outputs_float.reshape(want_f.shape), want_f, atol=1e-5, rtol=1e-5)
        return
    qs = out["quantization"]
    want = np.rint(want_f / qs["scale"][0]).astype(np.int32) + qs["zero_point"][0]
    g = got.outputs.astype(np.int32)
    assert np.abs(g.reshape(want.shape) - want).max() <= 1
