"""ONNX pools beyond TFLite's against ONNX Runtime: ceil_mode (SqueezeNet's pools, and the window
that would start in the right padding, dropped as the specification says), AveragePool with
count_include_pad both ways, dilated MaxPool; float32 within 1e-5, int8 QDQ within 1 LSB, batch 1
and 2; the host C build equal to the interpreter."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper as h

from edgecomp.errors import UnsupportedError
from edgecomp.frontends.onnx import from_onnx
from onnx_graphs import float_model, import_run, lsb_diff, ort_run, qdq_model, save, to_onnx_layout
from c_harness import run_c
from op_check import random_inputs

#: (op, input H x W, kernel, stride, pads (t, l, b, r), ceil_mode, count_include_pad, dilation)
POOLS = [
    ("MaxPool", (13, 13), (3, 3), (2, 2), (0, 0, 0, 0), 1, 0, (1, 1)),  # SqueezeNet: 13 -> 6 (floor: 6 too)
    ("MaxPool", (14, 12), (3, 3), (2, 2), (0, 0, 0, 0), 1, 0, (1, 1)),  # 14 -> 7 (floor: 6): a clipped last window
    ("MaxPool", (6, 7), (2, 3), (2, 2), (1, 0, 1, 1), 1, 0, (1, 1)),
    ("MaxPool", (9, 8), (3, 2), (1, 2), (1, 1, 1, 0), 0, 0, (2, 2)),  # dilated
    ("MaxPool", (9, 9), (3, 3), (2, 2), (0, 0, 0, 0), 1, 0, (2, 1)),  # dilated, ceil
    ("AveragePool", (7, 9), (3, 3), (2, 2), (1, 1, 1, 1), 1, 1, (1, 1)),
    ("AveragePool", (7, 9), (3, 3), (2, 2), (1, 1, 1, 1), 1, 0, (1, 1)),
    ("AveragePool", (6, 6), (3, 3), (2, 2), (1, 0, 0, 1), 1, 1, (1, 1)),  # explicit pads on two sides only
    ("AveragePool", (8, 5), (2, 3), (3, 1), (0, 1, 0, 1), 0, 1, (1, 1)),
    ("AveragePool", (10, 10), (3, 3), (3, 3), (0, 0, 0, 0), 1, 1, (1, 1)),  # ceil without pads: nothing to count
]


def _pool(op, k, s, pads, ceil, cip, dil):
    def body(x):
        attrs = dict(kernel_shape=list(k), strides=list(s), pads=[pads[0], pads[1], pads[2], pads[3]], ceil_mode=ceil)
        if op == "AveragePool":
            attrs["count_include_pad"] = cip
        if dil != (1, 1):
            attrs["dilations"] = list(dil)
        return [h.make_node(op, [x], ["p"], **attrs)], "p", []
    return body


def _id(p):
    op, hw, k, s, pads, ceil, cip, dil = p
    return f"{op}{hw[0]}x{hw[1]}k{k[0]}{k[1]}s{s[0]}{s[1]}p{''.join(map(str, pads))}c{ceil}i{cip}d{dil[0]}{dil[1]}"


@pytest.mark.parametrize("pool", POOLS, ids=_id)
@pytest.mark.parametrize("batch", [1, 2])
def test_pool_float_matches_onnxruntime(tmp_path, pool, batch):
    op, hw, *rest = pool
    shape = (batch, 3) + hw
    p = save(float_model(shape, _pool(op, *rest), opset=22), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=sum(hw))[0]
    g, _, got = import_run(p, x)
    want = ort_run(p, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", POOLS, ids=_id)
@pytest.mark.parametrize("batch", [1, 2])
def test_pool_int8_within_one_lsb_of_onnxruntime(tmp_path, pool, batch):
    """One quantization in and out (as ORT's quantizer gives pools): padded taps are the zero point."""
    op, hw, *rest = pool
    shape = (batch, 3) + hw
    q = (0.043, 17)
    p = save(qdq_model(shape, _pool(op, *rest), q, q, opset=22), tmp_path / "q.onnx")
    worst = 0
    for seed in range(10):
        x = random_inputs(shape, "float32", 1, seed=seed)[0] * 2
        g, _, got = import_run(p, x)
        worst = max(worst, lsb_diff(got, ort_run(p, x), g))
    assert worst <= 1
    assert [n.op for n in g.nodes] == [{"MaxPool": "max_pool2d", "AveragePool": "avg_pool2d"}[op]]


def test_window_starting_in_the_right_padding_is_dropped(tmp_path):
    """5 pixels, k2 s2, pads 1: ceil gives 4 windows, the 4th starts in the padding: 3 (opset 22)."""
    p = save(float_model((1, 2, 5, 5), _pool("MaxPool", (2, 2), (2, 2), (1, 1, 1, 1), 1, 0, (1, 1)), opset=22),
             tmp_path / "m.onnx")
    g = from_onnx(p)
    assert g.tensors[g.outputs[0]].shape == (1, 3, 3, 2)


def test_shape_inference_that_keeps_that_window_is_refused(tmp_path):
    """Before opset 22 ONNX's shape inference keeps it (4x4) while ORT computes 3x3: refused."""
    p = save(float_model((1, 2, 5, 5), _pool("MaxPool", (2, 2), (2, 2), (1, 1, 1, 1), 1, 0, (1, 1)), opset=19),
             tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError, match="right padding") as e:
        from_onnx(p)
    assert "opset 22" in str(e.value)


def test_dilated_average_pool_is_refused(tmp_path):
    p = save(float_model((1, 2, 9, 9), _pool("AveragePool", (3, 3), (1, 1), (0, 0, 0, 0), 0, 0, (2, 2)), opset=22),
             tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError, match="dilated AveragePool"):
        from_onnx(p)


@pytest.mark.toolchain
@pytest.mark.parametrize("dtype", ["int8", "float32"])
@pytest.mark.parametrize("pool", [POOLS[1], POOLS[3], POOLS[4], POOLS[5], POOLS[7]], ids=_id)
def test_pool_host_c_equals_interpreter(tmp_path, dtype, pool):
    op, hw, *rest = pool
    shape = (2, 3) + hw
    q = (0.043, 17)
    m = qdq_model(shape, _pool(op, *rest), q, q, opset=22) if dtype == "int8" else \
        float_model(shape, _pool(op, *rest), opset=22)
    g, xin, want = import_run(save(m, tmp_path / "m.onnx"), random_inputs(shape, "float32", 1, seed=5)[0] * 2)
    (tmp_path / "c").mkdir()
    got = run_c(g, xin, tmp_path / "c")
    if dtype == "int8":
        np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))
    else:
        np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-5, atol=1e-6)
    ext = pool[6] or pool[7] != (1, 1)
    assert ("_ext_" in (tmp_path / "c" / "model.c").read_text()) == bool(ext)
