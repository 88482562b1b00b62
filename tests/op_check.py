"""Helpers of the op-level tests (test_ops_activations.py, test_ops_binary.py): one-op TFLite models,
TensorFlow Lite Micro on several inputs, and the host C build of a graph held to the interpreter."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgecomp import interp, ir
from edgecomp.frontends.tflite import load_tflite
from c_harness import run_c

N_INPUTS = 100  # random inputs per model (issue 16: TFLite ops 0 LSB against TFLM on 100 inputs)


def q(name, shape, scale, zp, dtype="int8", **kw) -> dict:
    """A quantized TFLite tensor for conftest.build_tflite."""
    return dict(name=name, shape=list(shape), dtype=dtype, scale=[float(scale)], zero_point=[int(zp)], **kw)


def f(name, shape, **kw) -> dict:
    return dict(name=name, shape=list(shape), dtype="float32", **kw)


def random_inputs(shape, dtype: str, n: int, seed: int) -> np.ndarray:
    """n samples of the given shape from default_rng(seed): int8 uniform over [-128, 127], float32 N(0, 1)."""
    rng = np.random.default_rng(seed)
    if dtype == "int8":
        return rng.integers(-128, 128, (n,) + tuple(shape)).astype(np.int8)
    return rng.standard_normal((n,) + tuple(shape)).astype(np.float32)


def rand_input(t: ir.Tensor, n: int, rng) -> np.ndarray:
    if t.dtype == "int8":
        return rng.integers(-128, 128, (n,) + tuple(t.shape), dtype=np.int8)
    return (rng.standard_normal((n,) + tuple(t.shape)) * 3).astype(np.float32)


def tflm(model: bytes, xs: list[np.ndarray]) -> np.ndarray:
    """TFLite Micro on samples xs[i][s] (one array of samples per model input); outputs stacked."""
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(model, arena_size=4 << 20)
    out = []
    for s in range(len(xs[0])):
        for i, x in enumerate(xs):
            it.set_input(x[s], i)
        it.invoke()
        out.append(it.get_output(0).copy())
    return np.stack(out)


def interp_samples(g: ir.Graph, xs: list[np.ndarray]) -> np.ndarray:
    """The interpreter on the same samples (each sample a whole model input, batch axis included)."""
    out = []
    for s in range(len(xs[0])):
        out.append(interp.run(g, {name: x[s] for name, x in zip(g.inputs, xs)})[g.outputs[0]])
    return np.stack(out)


def host_c(g: ir.Graph, x: np.ndarray, dsp: bool = False) -> np.ndarray:
    """The graph's C (reference kernels, or the DSP kernels in their C form) built with gcc and run on
    samples x[s] (whole model inputs, batch axis included)."""
    t = g.tensors[g.inputs[0]]
    flat = x.reshape((-1,) + tuple(t.shape[1:]))
    with tempfile.TemporaryDirectory(prefix="ec-op-") as td:
        y = run_c(g, flat, Path(td), dsp=dsp)
    o = g.tensors[g.outputs[0]]
    return y.reshape((len(x),) + tuple(o.shape))


def tflite_check(model: bytes, rng, n: int = N_INPUTS, c: bool = True, dsp: bool = False) -> tuple[ir.Graph, np.ndarray]:
    """The interpreter equals TFLM (0 LSB / float within 1e-5) on n random inputs, and the host C
    equals the interpreter (one-input models); returns (graph, TFLM outputs)."""
    g = load_tflite(model)
    xs = [rand_input(g.tensors[i], n, rng) for i in g.inputs]
    want = tflm(model, xs)
    got = interp_samples(g, xs)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape)
    close(got, want)
    if c and len(g.inputs) == 1:
        close(host_c(g, xs[0], dsp=dsp), got)
    return g, want


def close(got: np.ndarray, want: np.ndarray, lsb: int = 0) -> None:
    if np.issubdtype(want.dtype, np.integer):
        d = np.abs(got.astype(np.int64) - want.astype(np.int64))
        assert d.max() <= lsb, f"{d.max()} LSB apart at {np.unravel_index(d.argmax(), d.shape)} ({int((d > lsb).sum())} elements)"
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def spread(y: np.ndarray) -> int:
    """How many distinct values an output takes (a test whose output is nearly constant checks little)."""
    return len(np.unique(y))
