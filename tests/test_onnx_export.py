"""Float TFLite models exported to ONNX run in ONNX Runtime like in LiteRT."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgecomp.backends.onnx_export import to_onnx
from edgecomp.errors import UnsupportedError
from edgecomp.frontends.tflite import load_tflite
from edgecomp.reference import litert_run

# kws_ref_model_float32 has one dynamic-range ("hybrid") conv: LiteRT quantizes its input on
# the fly, the exported model runs it in float with the dequantized weights
FLOAT_MODELS = {"ad01_fp32": 1e-4, "pretrainedResnet": 1e-4, "vww_96_float": 1e-4, "kws_ref_model_float32": 0.05}


@pytest.mark.parametrize("model,tol", FLOAT_MODELS.items())
def test_mlperf_float_models_match_litert(tmp_path, mlperf_dir, model, tol):
    path = mlperf_dir / f"{model}.tflite"
    g = load_tflite(path)
    onnx_path = to_onnx(g, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(onnx_path)))
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = g.tensors[g.inputs[0]].shape
    assert list(s.get_inputs()[0].shape) == list(shape)  # the IR's NHWC at the edges
    x = np.random.default_rng(1).random((4,) + tuple(shape[1:]), dtype=np.float32)
    got = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    want = litert_run(path, x).reshape(got.shape)
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tol * scale
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.75


def test_int8_graphs_are_refused(tmp_path, mlperf_dir):
    with pytest.raises(UnsupportedError, match="int8"):
        to_onnx(load_tflite(mlperf_dir / "kws_ref_model.tflite"), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
