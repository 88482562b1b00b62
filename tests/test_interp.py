"""The reference interpreter: batches, fused residual adds, clear input errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from edgecomp import interp
from edgecomp.errors import ModelError
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize
from edgecomp.reference import tflm_run


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
