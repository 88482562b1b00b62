"""The ONNX frontend's layout model (frontends/onnx/layout.py): ONNX tensors are channels-first,
the IR's spatial ops channels-last; every axis-dependent op must still compute what ONNX Runtime
computes, whatever the layout its input arrived in.  float32 on the host (interpreter and C)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecomp import api, interp
from edgecomp.frontends.onnx import from_onnx
from edgecomp.frontends.torch import export_onnx

torch.set_num_threads(1)


class SoftmaxAxis(nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.softmax(self.conv(x), self.axis)


class AvgPool1d(nn.Module):
    """AvgPool1d as older exporters write it: Unsqueeze -> AveragePool -> Squeeze (the 3-D data in
    ONNX order, the pool channels-last)."""
    def forward(self, x):
        return F.avg_pool2d(x.unsqueeze(2), (1, 2)).squeeze(2)


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle between two convolutions (reshape - transpose - reshape)."""
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.b(y)


class FlattenConcat(nn.Module):
    """Two flattened feature maps concatenated (features in ONNX's CHW order), then a linear layer."""
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(6 * 5 * 4, 7)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x).flatten(1), self.b(x).flatten(1)], 1))


class Unsqueezed(nn.Module):
    """A 3-D tensor made 4-D, convolved, made 3-D again (the result in ONNX order)."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, (1, 3), padding=(0, 1))

    def forward(self, x):
        return self.conv(x.unsqueeze(2)).squeeze(2)


CASES = [(SoftmaxAxis(1), (2, 3, 4, 5)), (SoftmaxAxis(3), (2, 3, 4, 5)), (SoftmaxAxis(-1), (1, 3, 4, 5)),
         (AvgPool1d(), (2, 3, 6)), (ChannelShuffle(), (1, 3, 5, 4)), (FlattenConcat(), (1, 3, 5, 4)),
         (Unsqueezed(), (2, 3, 7))]


@pytest.mark.parametrize("model,shape", CASES, ids=[f"{type(m).__name__}{s}" for m, s in CASES])
def test_float_graph_equals_onnxruntime(tmp_path, model, shape):
    torch.manual_seed(0)
    model.eval()
    x = torch.randn(*shape)
    path = export_onnx(model, x, tmp_path / "m.onnx")
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    g = from_onnx(path)
    got = interp.run(g, api.quantize_input(x.numpy(), _io(g)))[g.outputs[0]]
    got = _to_onnx(got, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.toolchain
@pytest.mark.parametrize("model,shape", CASES[:1] + CASES[3:], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v))
def test_float_c_on_the_host_equals_onnxruntime(tmp_path, model, shape):
    torch.manual_seed(0)
    model.eval()
    x = torch.randn(*shape)
    if shape[0] != 1:
        shape = (1,) + shape[1:]
        x = x[:1]
    path = export_onnx(model, x, tmp_path / "m.onnx")
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    api.compile_model(path, "host", tmp_path / "b", precision="float32")
    got = np.asarray(api.run_bundle(tmp_path / "b", x.numpy(), progress=False).outputs_float)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def _io(g):
    t = g.tensors[g.inputs[0]]
    return {"shape": list(t.shape), "dtype": t.dtype, "layout": "NHWC" if len(t.shape) == 4 else "NC",
            "source_layout": "NCHW" if len(t.shape) == 4 else None, "quantization": None}


def _to_onnx(y, shape):
    if y.ndim == 4 and len(shape) == 4:
        return y.transpose(0, 3, 1, 2)
    return y.reshape(shape)
