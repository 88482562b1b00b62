"""int4 weights, two per byte in flash: TFLite INT4 models built here, held against TensorFlow Lite
Micro (which runs int4 FULLY_CONNECTED per tensor and CONV_2D per channel), through the numpy
interpreter, the host build and the Cortex-M firmware under QEMU."""
from __future__ import annotations

import re

import numpy as np
import pytest

from edgecomp import api, interp
from edgecomp.backends.c.emit.int4 import pack_rows
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.requantize import requantize


def _pack_tflite(w: np.ndarray) -> np.ndarray:
    """TFLite's INT4 buffer: the flat tensor two values a byte, low nibble first (written here
    independently of the C backend's packer)."""
    flat = w.reshape(-1).astype(np.int16)
    if len(flat) % 2:
        flat = np.append(flat, 0)
    return ((flat[0::2] & 0xF) | ((flat[1::2] & 0xF) << 4)).astype(np.uint8)


def _q(name, shape, scale, zp):
    return dict(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp])


def _model(builder, seed: int, dilation: int = 1) -> tuple[bytes, tuple]:
    """x [1,7,6,4] -> CONV_2D int4 per channel (3x3 stride 2, SAME, relu, 5 channels: rows of 12 taps,
    the SMLAD path on cortex-m4) -> CONV_2D int4 3x3 SAME (5 -> 3: every channel decoded once, border windows)
    -> RESHAPE ->
    FULLY_CONNECTED int4 per tensor (36 -> 9, odd rows of 36) -> FULLY_CONNECTED int8 (9 -> 4)."""
    rng = np.random.default_rng(seed)
    wc = rng.integers(-8, 8, (5, 3, 3, 4)).astype(np.int8)
    wc[0, 0, 0, 0], wc[1, 0, 0, 0] = -8, 7  # both ends of the int4 range
    sc = rng.uniform(0.02, 0.06, 5).astype(np.float32)
    wp = rng.integers(-8, 8, (3, 3, 3, 5)).astype(np.int8)
    sp = rng.uniform(0.02, 0.06, 3).astype(np.float32)
    wf = rng.integers(-8, 8, (9, 36)).astype(np.int8)
    wg = rng.integers(-127, 128, (4, 9)).astype(np.int8)
    conv = ("Conv2DOptions", {"Padding": 0, "StrideH": 2, "StrideW": 2, "DilationHFactor": dilation,
                              "DilationWFactor": dilation, "FusedActivationFunction": 1})
    pw = ("Conv2DOptions", {"Padding": 0, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1,
                            "FusedActivationFunction": 0})
    fc = ("FullyConnectedOptions", {"FusedActivationFunction": 0})
    tensors = [_q("x", (1, 7, 6, 4), 0.05, 3),
               dict(name="wc", shape=[5, 3, 3, 4], dtype="int4", data=_pack_tflite(wc), scale=list(sc),
                    zero_point=[0] * 5, axis=0),
               dict(name="bc", shape=[5], dtype="int32", data=rng.integers(-400, 400, 5).astype(np.int32),
                    scale=list(0.05 * sc), zero_point=[0] * 5),
               _q("c", (1, 4, 3, 5), 0.09, -128),
               dict(name="wp", shape=[3, 3, 3, 5], dtype="int4", data=_pack_tflite(wp), scale=list(sp),
                    zero_point=[0] * 3, axis=0),
               dict(name="bp", shape=[3], dtype="int32", data=rng.integers(-300, 300, 3).astype(np.int32),
                    scale=list(0.09 * sp), zero_point=[0] * 3),
               _q("d", (1, 4, 3, 3), 0.07, 6),
               _q("r", (1, 36), 0.07, 6),
               dict(name="wf", shape=[9, 36], dtype="int4", data=_pack_tflite(wf), scale=[0.04], zero_point=[0]),
               dict(name="bf", shape=[9], dtype="int32", data=rng.integers(-900, 900, 9).astype(np.int32),
                    scale=[0.07 * 0.04], zero_point=[0]),
               _q("f", (1, 9), 0.5, 2),
               dict(name="wg", shape=[4, 9], dtype="int8", data=wg, scale=[0.01], zero_point=[0]),
               _q("y", (1, 4), 0.3, -1)]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3], options=conv),
           dict(op="CONV_2D", inputs=[3, 4, 5], outputs=[6], options=pw),
           dict(op="RESHAPE", inputs=[6], outputs=[7]),
           dict(op="FULLY_CONNECTED", inputs=[7, 8, 9], outputs=[10], options=fc),
           dict(op="FULLY_CONNECTED", inputs=[10, 11], outputs=[12], options=fc)]
    return builder(tensors, ops, [0], [12]), (wc, wf)


def _tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime
    t = runtime.Interpreter.from_bytes(model)
    out = []
    for s in x:
        t.set_input(s[None], 0)
        t.invoke()
        out.append(t.get_output(0).copy())
    return np.concatenate(out)


def _inputs(n, seed):
    return np.random.default_rng(seed).integers(-128, 128, (n, 7, 6, 4)).astype(np.int8)


def test_int4_tflite_is_read_as_packed_layers_and_interp_matches_tflm(tflite_builder):
    m, (wc, wf) = _model(tflite_builder, 0)
    g = load_tflite(m)
    conv, _pw, fc, fc8 = [n for n in g.nodes if n.op in ("conv2d", "fully_connected")]
    assert conv.attrs["packed_weights"] == {"bits": 4, "codebook": None} and fc.attrs["packed_weights"]["bits"] == 4
    assert "packed_weights" not in fc8.attrs  # the int8 layer stays int8
    np.testing.assert_array_equal(g.tensors[conv.inputs[1]].data, wc)  # unpacked exactly
    np.testing.assert_array_equal(g.tensors[fc.inputs[1]].data, wf)
    x = _inputs(20, 1)
    got = interp.run(requantize(g), x)[g.outputs[0]]
    np.testing.assert_array_equal(got.reshape(20, 4), _tflm(m, x).reshape(20, 4))


def test_pack_rows_matches_tflite_packing_for_whole_rows():
    w = np.random.default_rng(3).integers(-8, 8, (6, 30)).astype(np.int8)  # 30 taps: rows of whole bytes
    np.testing.assert_array_equal(pack_rows(w, 4).reshape(-1), _pack_tflite(w))
    w5 = np.random.default_rng(4).integers(0, 32, (3, 7))  # 5-bit indices: 35 bits -> 5 bytes a row
    p = pack_rows(w5, 5)
    bits = np.unpackbits(p, axis=1, bitorder="little")
    back = (bits[:, :35].reshape(3, 7, 5) * (1 << np.arange(5))).sum(2)
    np.testing.assert_array_equal(back, w5)


def _compile(tmp_path, model: bytes, target: str, name: str) -> tuple[dict, object]:
    f = tmp_path / f"{name}.tflite"
    f.write_bytes(model)
    man = api.compile_model(f, target, tmp_path / name)
    return man, tmp_path / name


@pytest.mark.toolchain
def test_int4_layers_compile_packed_and_are_bit_exact_on_the_host(tflite_builder, tmp_path):
    m, (wc, wf) = _model(tflite_builder, 5)
    man, b = _compile(tmp_path, m, "host", "b4")
    kernels = [layer["kernel"] for layer in man["layers"]]
    assert kernels[0].startswith("conv2d_s4, int4 weights") and kernels[1].startswith("conv2d_s4")
    assert kernels[3].startswith("fully_connected_s4") and not kernels[4].startswith("fully_connected_s4")
    weights = (b / "weights.c").read_text()
    # two weights a byte: 5 channels x 36 / 2 bytes, 3 x ceil(45 / 2), 9 rows x 36 / 2
    for n in (90, 69, 162):
        assert re.search(rf"int8_t \w*filter_packed\[{n}\]", weights), n
    assert "ec_kernels_s4.c" in man["files"]
    x = _inputs(40, 6)
    got = api.run_bundle(b, x, emulate=False).outputs
    np.testing.assert_array_equal(got.reshape(40, 4), _tflm(m, x).reshape(40, 4))


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.parametrize("target,dilation", [("cortex-m4", 1), ("cortex-m0", 1), ("cortex-m4", 2)])
def test_int4_firmware_is_bit_exact_with_tflm(tflite_builder, tmp_path, target, dilation):
    m, _ = _model(tflite_builder, 7, dilation)
    man, b = _compile(tmp_path, m, target, "b4")
    x = _inputs(25, 8)
    got = api.run_bundle(b, x, progress=False).outputs
    np.testing.assert_array_equal(got.reshape(25, 4), _tflm(m, x).reshape(25, 4))


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.qemu
def test_clustered_layers_stored_as_indices_compute_what_int8_storage_computes(tmp_path):
    """Weight clustering with 64, 32 and 16 values per layer (6-, 5- and 4-bit indices into a codebook):
    the packed bundle gives exactly the outputs of the same rewritten QDQ model stored as int8, on the
    host and on cortex-m4 (where the int8 storage runs the DSP kernels), with fewer bytes of weights."""
    import torch

    from edgecomp.compress.distill import fit
    from edgecomp.compress.lowbit import compile_lowbit, rewrite, weighted_layers
    from edgecomp.compress.qat import export_qdq
    from edgecomp.compress.search import mnist_cnn
    from edgecomp.datasets import load_digits_split
    xtr, ytr, xte, _ = load_digits_split(0)
    torch.manual_seed(0)
    m = fit(mnist_cnn(0.5, 32, in_hw=8), xtr, ytr, epochs=2, lr=3e-3, verbose=False)
    q = export_qdq(m, torch.from_numpy(xte[:1]), xtr[:100], tmp_path / "m.int8.onnx")
    names = sorted(weighted_layers(q))  # conv1..3, fc1, fc2
    ks = dict(zip(names, (64, 32, 16, 64, 32)))
    plan = rewrite(q, tmp_path / "m.cl.onnx", {n: {"clusters": k} for n, k in ks.items()})
    assert {n: p["bits"] for n, p in plan.items()} == {n: {64: 6, 32: 5, 16: 4}[k] for n, k in ks.items()}
    x = xte[:30]
    for target in ("host", "cortex-m4"):
        packed = compile_lowbit(tmp_path / "m.cl.onnx", target, tmp_path / f"p-{target}", plan)
        plain = api.compile_model(tmp_path / "m.cl.onnx", target, tmp_path / f"i-{target}")
        assert sum("codebook" in layer["kernel"] for layer in packed["layers"]) == len(names)
        a = api.run_bundle(tmp_path / f"p-{target}", x, emulate=target != "host", progress=False).outputs
        b = api.run_bundle(tmp_path / f"i-{target}", x, emulate=target != "host", progress=False).outputs
        np.testing.assert_array_equal(a, b)
        assert packed["model_flash_bytes"] < plain["model_flash_bytes"]
