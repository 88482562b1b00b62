"""Early refusal in the user's words: every unsupported operator of the file the user gave, with
counts and node names, and a suggestion that works (edgecomp/frontends/alternatives.py), before
any calibration runs; `edgecomp info` says the same."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp import api, cli
from edgecomp.errors import UnsupportedError
from edgecomp.frontends.tflite import load_tflite


class Unsupported(torch.nn.Module):
    """Softplus twice and Floor: ops neither import path has."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, x):
        y = torch.nn.functional.softplus(self.conv(x))
        return torch.floor(y) + torch.nn.functional.softplus(y)


def test_compile_names_every_unsupported_op_before_calibration(tmp_path, monkeypatch):
    def no_calibration(*a, **k):
        raise AssertionError("calibration ran before the refusal")

    monkeypatch.setattr(api, "_checked_calibration", no_calibration)
    with pytest.raises(UnsupportedError) as e:
        api.compile_model(Unsupported(), "host", tmp_path / "b", example_input=torch.zeros(1, 3, 8, 8),
                          calib=np.zeros((8, 3, 8, 8), np.float32))
    msg = str(e.value)
    assert "Floor (x1), Softplus (x2)" in msg, msg
    assert "/Floor (Floor)" in msg and "/Softplus_1 (Softplus)" in msg
    assert "Floor, Softplus: not supported by edgecomp from ONNX or TFLite" in msg
    assert not (tmp_path / "b").exists()


def test_info_lists_the_same_ops(tmp_path, capsys):
    from edgecomp.frontends.torch import export_onnx

    path = export_onnx(Unsupported(), torch.zeros(1, 3, 8, 8), tmp_path / "m.onnx")
    assert cli.main(["info", str(path)]) == 2
    out = capsys.readouterr()
    assert "Floor (x1), Softplus (x2)" in out.out + out.err


def test_tflite_refusal_points_to_the_path_that_takes_the_op(tflite_builder, tmp_path, capsys):
    q = lambda n: dict(name=n, shape=[1, 2, 4], dtype="int8", scale=[0.05], zero_point=[0])  # noqa: E731
    ops = [dict(op="SIN", inputs=[0], outputs=[1]), dict(op="DIV", inputs=[1, 0], outputs=[2])]
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_builder([q("a"), q("b"), q("c")], ops, [0], [2]))
    with pytest.raises(UnsupportedError) as e:
        load_tflite(path)  # the frontend alone: its own view
    assert "DIV (x1), SIN (x1)" in str(e.value) and "SIN: not supported by edgecomp from TFLite" in str(e.value)
    assert cli.main(["info", str(path)]) == 2  # the entry points add the ONNX path's view
    out = capsys.readouterr()
    msg = out.out + out.err
    assert "DIV (x1), SIN (x1)" in msg
    assert "SIN: not supported by edgecomp from ONNX or TFLite" in msg
    assert "DIV: supported when the model comes as ONNX (Div); rewrite as a MUL by the reciprocal" in msg
    with pytest.raises(UnsupportedError, match="DIV: supported when the model comes as ONNX"):
        api.compile_model(str(path), "host", tmp_path / "b")
