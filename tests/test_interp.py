"""The reference interpreter: batches, fused residual adds, clear input errors, and the C of
the int8 layer zoo equal to it (int16: tests/test_interp_s16.py, tests/test_int16.py)."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecomp import interp
from edgecomp.errors import ModelError
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize
from edgecomp.reference import tflm_run

sys.path.insert(0, str(Path(__file__).parent))
from c_harness import run_c  # noqa: E402  (the host harness)


@pytest.fixture(scope="module")
def resnet(mlperf_dir):
    return requantize(load_tflite(mlperf_dir / "pretrainedResnet_quant.tflite"))


def _x(n, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, 32, 32, 3)).astype(np.int8)


def test_batch_equals_one_sample_at_a_time(resnet):
    x = _x(interp.CHUNK + 3)  # crosses a chunk boundary
    out = resnet.outputs[0]
    batch = interp.run(resnet, x)[out]
    single = np.concatenate([interp.run(resnet, x[i:i + 1])[out] for i in range(len(x))])
    np.testing.assert_array_equal(batch, single)
    assert batch.shape == (len(x), 10)
    np.testing.assert_array_equal(interp.run(resnet, x[0])[out], single[:1])  # no batch axis


def test_all_tensors_and_unrequantized_graph(resnet, mlperf_dir):
    x = _x(2, seed=1)
    full = interp.run(resnet, x, all_tensors=True)
    assert set(full) >= {t.name for t in resnet.activations()}
    raw = load_tflite(mlperf_dir / "pretrainedResnet_quant.tflite")  # q computed on the fly
    np.testing.assert_array_equal(interp.run(raw, x)[raw.outputs[0]], full[resnet.outputs[0]])


def fuse_residual_adds(g):
    """Fold every add whose input comes from a conv used only there into that conv (attrs['residual'])."""
    g = copy.deepcopy(g)
    fused = 0
    for add in [n for n in g.nodes if n.op == "add"]:
        for k in (0, 1):
            conv = g.producer(add.inputs[k])
            if conv is None or conv.op != "conv2d" or len(g.consumers(add.inputs[k])) != 1:
                continue
            skip = add.inputs[1 - k]
            if g.nodes.index(g.producer(skip) or conv) > g.nodes.index(conv):
                continue  # the skip tensor must exist before the conv runs
            conv.attrs["residual"] = {"tensor": skip, "act": add.attrs["act"]}
            conv.attrs["conv_out_quant"] = g.t(conv.outputs[0]).quant
            conv.inputs.append(skip)
            conv.outputs = list(add.outputs)
            g.nodes.remove(add)
            fused += 1
            break
    return g, fused


def test_fused_residual_add_is_bit_exact(resnet, mlperf_dir):
    fused, n = fuse_residual_adds(resnet)
    assert n == 3 and not any(node.op == "add" for node in fused.nodes)
    requantize(fused)
    for node in fused.nodes:
        if "residual" in node.attrs:
            assert node.attrs["residual"]["q"]["left_shift"] == 20
    x = _x(10, seed=2)
    want = tflm_run(mlperf_dir / "pretrainedResnet_quant.tflite", x)
    np.testing.assert_array_equal(interp.run(fused, x)[fused.outputs[0]], want)
    full = interp.run(resnet, x, all_tensors=True)
    mid = interp.run(fused, x, all_tensors=True)
    for name in mid:
        if name in full:
            np.testing.assert_array_equal(mid[name], full[name], err_msg=name)


def test_fused_residual_add_float(mlperf_dir):
    g = load_tflite(mlperf_dir / "pretrainedResnet.tflite")
    fused, n = fuse_residual_adds(g)
    assert n == 3
    x = np.random.default_rng(3).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(interp.run(fused, x)[fused.outputs[0]], interp.run(g, x)[g.outputs[0]],
                               rtol=1e-6, atol=1e-7)


def test_input_errors_are_model_errors(resnet):
    with pytest.raises(ModelError, match="int8"):
        interp.run(resnet, np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ModelError, match="shape"):
        interp.run(resnet, np.zeros((1, 3, 32, 32), np.int8))
    with pytest.raises(ModelError, match="missing input"):
        interp.run(resnet, {"nope": np.zeros((1, 32, 32, 3), np.int8)})


def test_fuse_pass_output_runs_bit_exact(resnet, mlperf_dir):
    """The graph passes.fuse_residual hands the C backend runs here too, equal to TFLM."""
    from edgecomp.passes.fuse_residual import fuse_residual_adds as fuse_pass
    fused = requantize(fuse_pass(resnet))
    assert sum("residual" in n.attrs for n in fused.nodes) == 3
    x = _x(6, seed=4)
    want = tflm_run(mlperf_dir / "pretrainedResnet_quant.tflite", x)
    np.testing.assert_array_equal(interp.run(fused, x)[fused.outputs[0]], want)


# --------------------------------------------------------------------------- the int8 layer zoo in C
ZOO_INT8 = ["conv", "conv_stride2_asym_pad", "conv_relu_stride2", "conv_dilated", "depthwise", "depthwise_mult2_stride2",
            "fc_flatten", "fc_clip", "relu", "clip", "maxpool", "avgpool", "avgpool_3x3_s2_pad", "global_avgpool",
            "add", "add_relu", "concat", "softmax"]


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", ZOO_INT8)
def test_layer_zoo_int8_c_equals_the_interpreter(tmp_path, kind):
    """ORT-quantized one-layer models (QDQ lowered by the ONNX frontend): the host C build, with the
    reference kernels and with the DSP kernels (their plain C form), equals interp.run to the bit."""
    import torch

    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.frontends.onnx import from_onnx
    from edgecomp.frontends.torch import export_onnx
    from layer_zoo import Layer

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    f = export_onnx(Layer(kind).eval(), torch.zeros(1, 4, 6, 6), tmp_path / "m.onnx")
    q = quantize_onnx(f, rng.standard_normal((64, 4, 6, 6)).astype(np.float32), tmp_path / "q.onnx", progress=False)
    g = from_onnx(q)
    t = g.tensors[g.inputs[0]]
    if t.dtype == "int8":  # the whole int8 range: saturation included
        x = rng.integers(-128, 128, size=(8,) + t.shape[1:], dtype=np.int8)
    else:
        x = (rng.standard_normal((8,) + t.shape[1:]) * 2).astype(np.float32)
    want = interp.run(g, x)[g.outputs[0]]
    assert want.dtype == np.int8 and np.ptp(want.astype(np.int32)) > 0
    for dsp in (False, True):
        d = tmp_path / ("dsp" if dsp else "ref")
        d.mkdir()
        np.testing.assert_array_equal(run_c(g, x, d, dsp=dsp), want, err_msg=f"dsp={dsp}")
