"""The output-resolution rule (edgecomp/compress/output_resolution.py): an int8 classifier ending in a
weightless mean whose calibration samples are decided by less than one int8 output step gets a float
mean (listed in the quantization report with the reason); one with clear margins stays int8."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import numpy_helper

from edgecomp import api
from edgecomp.compress.output_resolution import NARROW_FRACTION, narrow_fraction
from edgecomp.demo import ort_outputs

torch.set_num_threads(1)


class AllConv(nn.Module):
    """conv 1x1 (4 -> 10 class maps), ReLU, global average pool: SqueezeNet's head."""

    def __init__(self, spread: float, lead: float):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 10, 1)
        with torch.no_grad():
            base = torch.randn(1, 4, 1, 1)
            self.conv.weight.copy_(base + spread * torch.randn(10, 4, 1, 1))  # classes alike: narrow margins
            self.conv.bias.fill_(1.0)
            self.conv.bias[0] += lead  # class 0 far ahead: wide margins

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)


def _data(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 4, 8, 8)).astype(np.float32)


def _mean_input_step(qdq) -> float:
    """The int8 step of the class maps the float mean averages (its DequantizeLinear's scale)."""
    g = onnx.load(str(qdq)).graph
    mean = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    dq = next(n for n in g.node if mean.input[0] in n.output)
    assert dq.op_type == "DequantizeLinear"
    return float(next(numpy_helper.to_array(i) for i in g.initializer if i.name == dq.input[1]))


def test_narrow_fraction_counts_top1_margins_below_the_step():
    out = np.array([[0.0, 1.0, 1.05], [0.0, 1.0, 2.0], [3.0, 0.0, 2.99], [5.0, 5.0, 0.0]], np.float32)
    assert narrow_fraction(out, 0.1) == 0.75
    assert narrow_fraction(out, 0.005) == 0.25  # the exact tie
    assert narrow_fraction(np.array([[0.0, 1.0, 1.5]], np.float32), 0.5) == 0.0  # one step apart: resolved
    assert narrow_fraction(out[:, :1], 10.0) == 0.0  # one output: no decision to resolve


@pytest.mark.toolchain
def test_narrow_classifier_gets_a_float_mean_and_the_report_says_why(tmp_path):
    m = AllConv(spread=0.02, lead=0.0).eval()
    calib, x = _data(64, 1), _data(32, 2)
    man = api.compile_model(m, "host", tmp_path / "b", example_input=torch.from_numpy(calib[:1]), calib=calib,
                            keep_onnx=tmp_path / "q.onnx")
    assert man["outputs"][0]["dtype"] == "float32"
    rows = man["quantization"]["float_layers"]
    assert len(rows) == 1 and rows[0]["reason"].startswith("output resolution: "), rows
    assert "calibration samples are decided by less than one int8 output step" in rows[0]["reason"]
    # the float mean of the int8 class maps, as ONNX Runtime runs the QDQ file (the mean excluded):
    # each class map value within 1 LSB of ORT's (the int8 contract), so their mean too
    got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False).outputs_float
    want = ort_outputs(tmp_path / "q.onnx", x)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=_mean_input_step(tmp_path / "q.onnx"))
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert narrow_fraction(ref, 0.0) == 0.0 and (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9


@pytest.mark.toolchain
def test_classifier_with_clear_margins_stays_int8(tmp_path):
    m = AllConv(spread=1.0, lead=20.0).eval()
    calib = _data(64, 1)
    with torch.no_grad():
        out = m(torch.from_numpy(calib)).numpy()
    assert narrow_fraction(out, out.max() / 255) < NARROW_FRACTION
    man = api.compile_model(m, "host", tmp_path / "b", example_input=torch.from_numpy(calib[:1]), calib=calib)
    assert man["outputs"][0]["dtype"] == "int8"
    assert man["quantization"]["float_layers"] == []
