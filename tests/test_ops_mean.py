"""Means on every axis: TFLite MEAN bit-exact with TFLite Micro (int8, keep_dims both ways, 2-D to
4-D, batch 1 and 2), ONNX ReduceMean against ONNX Runtime (float32 within 1e-5, int8 QDQ within 1
LSB), an int8 GlobalAveragePool whose scales differ compiled without a float island, the host C
build equal to the interpreter (reference and DSP kernels), and a cortex-m4 sample under QEMU."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from onnx import helper as h

from conftest import build_tflite
from edgecomp import api, interp
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize
from onnx_graphs import const, float_model, import_run, lsb_diff, ort_run, qdq, qdq_model, save, to_onnx_layout
from c_harness import run_c
from op_check import q as tq, random_inputs, tflm

AXES = {2: [(1,)], 3: [(1,), (2,), (1, 2)],
        4: [(1, 2), (1,), (2,), (3,), (1, 3), (2, 3), (1, 2, 3)]}
SHAPES = {2: (7,), 3: (5, 6), 4: (4, 5, 6)}  # after the batch axis


def mean_tflite(rank: int, batch: int, dtype: str, in_q=(0.05, 3), out_q=(0.02, -5)) -> bytes:
    """One model with a MEAN per axis set and keep_dims value, each reshaped to [batch, -1] and all
    concatenated (a copy: the output holds every mean's values)."""
    shape = (batch,) + SHAPES[rank]
    quant = (lambda n, s, q: tq(n, s, *q)) if dtype == "int8" else \
        (lambda n, s, q: dict(name=n, shape=list(s), dtype="float32"))
    tensors, ops, parts = [quant("x", shape, in_q)], [], []
    for axes, keep in itertools.product(AXES[rank], (True, False)):
        oshape = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
            [d for i, d in enumerate(shape) if i not in axes]
        k = len(tensors)
        n_out = math.prod(oshape) // batch
        tensors += [dict(name=f"axes{k}", shape=[len(axes)], dtype="int32", data=np.array(axes, np.int32)),
                    quant(f"mean{k}", oshape, out_q), quant(f"flat{k}", (batch, n_out), out_q)]
        ops += [dict(op="MEAN", inputs=[0, k], outputs=[k + 1], options=("ReducerOptions", {"KeepDims": keep})),
                dict(op="RESHAPE", inputs=[k + 1], outputs=[k + 2])]
        parts.append((k + 2, n_out))
    while len(parts) > 1:  # TFLM concatenates at most 10 inputs: in groups of 8
        group, parts = parts[:8], parts[8:]
        n_out = sum(n for _, n in group)
        tensors.append(quant(f"cat{len(tensors)}", (batch, n_out), out_q))
        ops.append(dict(op="CONCATENATION", inputs=[p for p, _ in group], outputs=[len(tensors) - 1],
                        options=("ConcatenationOptions", {"Axis": 1, "FusedActivationFunction": 0})))
        parts.append((len(tensors) - 1, n_out))
    return build_tflite(tensors, ops, [0], [parts[0][0]])


CASES = [(r, b) for r in (2, 3, 4) for b in (1, 2)]


@pytest.mark.parametrize("rank,batch", CASES)
@pytest.mark.parametrize("in_q,out_q", [((0.05, 3), (0.02, -5)), ((0.1, -128), (0.1, -128)), ((0.25, 0), (0.125, 0))])
def test_tflite_mean_int8_bit_exact_with_tflm(rank, batch, in_q, out_q):
    """100 random inputs, every axis set, keep_dims both ways; rescaled (the usual case) or not, and
    by a power of two (exact ties: the truncated multiplier (M << k) / count decides them)."""
    m = mean_tflite(rank, batch, "int8", in_q, out_q)
    g = requantize(load_tflite(m))
    assert sum(n.op == "mean" for n in g.nodes) == 2 * len(AXES[rank])
    x = random_inputs((batch,) + SHAPES[rank], "int8", 100, seed=rank * 10 + batch)
    want = tflm(m, [x])
    got = np.stack([interp.run(g, s)[g.outputs[0]] for s in x]) if batch > 1 else interp.run(g, x[:, 0])[g.outputs[0]]
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert len(np.unique(want)) > 20


@pytest.mark.parametrize("rank", [2, 3, 4])
def test_tflite_mean_float_matches_tflm(rank):
    m = mean_tflite(rank, 2, "float32")
    g = load_tflite(m)
    x = random_inputs((2,) + SHAPES[rank], "float32", 5, seed=rank)
    want = tflm(m, [x])
    got = np.stack([interp.run(g, s)[g.outputs[0]] for s in x])
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)


@pytest.mark.toolchain
@pytest.mark.parametrize("rank,batch,dsp", [(4, 1, False), (4, 1, True), (4, 2, True), (3, 2, True), (2, 1, False)])
def test_tflite_mean_host_c_equals_interpreter(tmp_path, rank, batch, dsp):
    """Reference and DSP kernels (the spatial mean over 4 channels at a time) bit for bit."""
    g = requantize(load_tflite(mean_tflite(rank, batch, "int8")))
    x = random_inputs((batch,) + SHAPES[rank], "int8", 1, seed=5)[0]
    got = run_c(g, x, tmp_path, dsp=dsp)
    np.testing.assert_array_equal(got.reshape(-1), interp.run(g, x)[g.outputs[0]].reshape(-1))
    c = (tmp_path / "model.c").read_text()
    assert ("ec_mean_s8_dsp(" in c) == (dsp and rank >= 3)


@pytest.mark.toolchain
def test_dsp_mean_sums_more_than_256_pixels_exactly(tmp_path):
    """The 16-bit lanes are flushed every 256 pixels: 30x40 pixels of -128 and of 127 (the extremes),
    5 channels (a tail channel after the 4-channel group)."""
    t = [tq("x", (1, 30, 40, 5), 0.05, 3), dict(name="a", shape=[2], dtype="int32", data=np.array([1, 2], np.int32)),
         tq("y", (1, 5), 0.05, 3)]
    m = build_tflite(t, [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=("ReducerOptions", {"KeepDims": False}))],
                     [0], [2])
    g = requantize(load_tflite(m))
    x = np.stack([np.full((30, 40, 5), -128, np.int8), np.full((30, 40, 5), 127, np.int8),
                  random_inputs((30, 40, 5), "int8", 1, 3)[0]])
    want = tflm(m, [x[:, None]])
    assert want[0].max() == -128 and want[1].min() == 127  # the extremes, not saturated
    got = run_c(g, x, tmp_path, dsp=True)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert "ec_mean_s8_dsp(" in (tmp_path / "model.c").read_text()


# -- ONNX ReduceMean ----------------------------------------------------------------------------

ONNX_SHAPES = {2: (6,), 3: (3, 5), 4: (3, 4, 5)}


def _axis_sets(rank):
    return [s for k in range(1, rank) for s in itertools.combinations(range(1, rank), k)]


def reduce_mean_body(rank: int, opset: int = 17, qdq_out=None):
    """Every axis set, keepdims both ways, each flattened; all concatenated along axis 1."""
    def body(x):
        nodes, inits, parts = [], [], []
        for i, (axes, keep) in enumerate(itertools.product(_axis_sets(rank), (1, 0))):
            if opset >= 18:
                inits.append(const(f"ax{i}", axes, np.int64))
                nodes.append(h.make_node("ReduceMean", [x, f"ax{i}"], [f"m{i}"], keepdims=keep))
            else:
                nodes.append(h.make_node("ReduceMean", [x], [f"m{i}"], axes=list(axes), keepdims=keep))
            y = f"m{i}"
            if qdq_out is not None:  # the mean's output quantized, as ORT does before a quantized reader
                n2, i2, y = qdq(y, *qdq_out, f"m{i}q")
                nodes += n2
                inits += i2
            nodes.append(h.make_node("Flatten", [y], [f"f{i}"]))
            parts.append(f"f{i}")
            if qdq_out is not None:
                n2, i2, parts[-1] = qdq(f"f{i}", *qdq_out, f"f{i}q")
                nodes += n2
                inits += i2
        nodes.append(h.make_node("Concat", parts, ["cat"], axis=1))
        return nodes, "cat", inits
    return body


ONNX_CASES = [(r, b, o) for r in (2, 3, 4) for b in (1, 2) for o in (17, 18)]


@pytest.mark.parametrize("rank,batch,opset", ONNX_CASES)
def test_reduce_mean_float_matches_onnxruntime(tmp_path, rank, batch, opset):
    shape = (batch,) + ONNX_SHAPES[rank]
    p = save(float_model(shape, reduce_mean_body(rank, opset), opset), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=rank)[0]
    g, _, got = import_run(p, x)
    want = ort_run(p, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-6)
    assert {n.op for n in g.nodes} >= {"mean"}


@pytest.mark.parametrize("rank,batch", [(r, b) for r in (2, 3, 4) for b in (1, 2)])
def test_reduce_mean_int8_within_one_lsb_of_onnxruntime(tmp_path, rank, batch):
    shape = (batch,) + ONNX_SHAPES[rank]
    out_q = (0.011, -7)
    p = save(qdq_model(shape, reduce_mean_body(rank, qdq_out=out_q), (0.031, 5), out_q), tmp_path / "q.onnx")
    worst = 0
    for seed in range(20):
        x = random_inputs(shape, "float32", 1, seed=seed)[0] * 1.5
        g, _, got = import_run(p, x)
        worst = max(worst, lsb_diff(got, ort_run(p, x), g))
    assert worst <= 1
    assert "dequantize" not in {n.op for n in g.nodes} and "mean" in {n.op for n in g.nodes}


@pytest.mark.toolchain
@pytest.mark.parametrize("rank,batch", [(4, 2), (3, 1), (2, 2)])
def test_reduce_mean_int8_host_c_equals_interpreter(tmp_path, rank, batch):
    shape = (batch,) + ONNX_SHAPES[rank]
    out_q = (0.011, -7)
    p = save(qdq_model(shape, reduce_mean_body(rank, qdq_out=out_q), (0.031, 5), out_q), tmp_path / "q.onnx")
    g, xin, want = import_run(p, random_inputs(shape, "float32", 1, seed=1)[0])
    (tmp_path / "c").mkdir()
    got = run_c(g, xin, tmp_path / "c", dsp=True)
    np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))


@pytest.mark.toolchain
def test_reduce_mean_float_host_c_matches_onnxruntime(tmp_path):
    shape = (2,) + ONNX_SHAPES[4]
    p = save(float_model(shape, reduce_mean_body(4)), tmp_path / "m.onnx")
    x = random_inputs(shape, "float32", 1, seed=2)[0]
    g, xin, _ = import_run(p, x)
    (tmp_path / "c").mkdir()
    got = run_c(g, xin, tmp_path / "c")
    want = ort_run(p, x)
    np.testing.assert_allclose(to_onnx_layout(got, want.shape), want, rtol=1e-5, atol=1e-6)


# -- GlobalAveragePool whose scales differ: the int8 mean, no float island ---------------------

@pytest.mark.parametrize("batch", [1, 3])
def test_global_average_pool_with_two_scales_is_int8(tmp_path, batch):
    shape = (batch, 6, 7, 5)

    def body(x):
        return [h.make_node("GlobalAveragePool", [x], ["g"])], "g", []
    p = save(qdq_model(shape, body, (0.04, -3), (0.0093, 11)), tmp_path / "q.onnx")
    worst = 0
    for seed in range(20):
        x = random_inputs(shape, "float32", 1, seed=seed)[0] + 0.5
        g, _, got = import_run(p, x)
        worst = max(worst, lsb_diff(got, ort_run(p, x), g))
    assert [n.op for n in g.nodes] == ["mean"] and g.tensors[g.outputs[0]].dtype == "int8"
    assert worst <= 1


@pytest.mark.toolchain
def test_global_average_pool_with_two_scales_compiles_without_float(tmp_path):
    """The whole path a user takes: compile for the host, run, within 1 LSB of ORT; no float layer."""
    shape = (1, 8, 6, 6)

    def body(x):
        return [h.make_node("GlobalAveragePool", [x], ["g"])], "g", []
    p = save(qdq_model(shape, body, (0.04, -3), (0.0093, 11)), tmp_path / "q.onnx")
    man = api.compile_model(p, "host", tmp_path / "b")
    assert [lay["op"] for lay in man["layers"]] == ["mean"]
    x = random_inputs(shape[1:], "float32", 16, seed=4) + 0.5
    got = api.run_bundle(tmp_path / "b", x, emulate=False, progress=False).outputs
    want = np.concatenate([ort_run(p, s[None]) for s in x])
    q = man["outputs"][0]["quantization"]
    want_q = np.rint(want / q["scale"][0]) + q["zero_point"][0]
    assert np.abs(got.reshape(want_q.shape).astype(np.int64) - want_q).max() <= 1


# -- a cortex-m4 sample under QEMU ------------------------------------------------------------------

@pytest.mark.qemu
@pytest.mark.toolchain
def test_mean_on_cortex_m4_equals_tflm(tmp_path):
    """Keras' GlobalAveragePooling2D (MEAN over H, W) and a mean over W, through the DSP kernel."""
    m = mean_tflite(4, 1, "int8")
    (tmp_path / "m.tflite").write_bytes(m)
    api.compile_model(tmp_path / "m.tflite", "cortex-m4", tmp_path / "b")
    assert "ec_mean_s8_dsp(" in (tmp_path / "b" / "model.c").read_text()
    x = random_inputs((1,) + SHAPES[4], "int8", 4, seed=9)
    got = api.run_bundle(tmp_path / "b", x[:, 0], emulate=True, progress=False).outputs
    np.testing.assert_array_equal(got.reshape(4, -1), tflm(m, [x]).reshape(4, -1))
