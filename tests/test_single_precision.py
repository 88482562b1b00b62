"""int8 <-> float conversions in single precision: the same floats as ONNX Runtime's DequantizeLinear
(float32 arithmetic) and TFLM's Dequantize (a double product), and no double routines in a Cortex-M4F
firmware (its FPU is single precision: doubles are library calls)."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp import ir
from edgecomp import numerics as nx
from edgecomp.backends.c.generate import generate
from edgecomp.backends.c.kernels.catalogue import bundle_names, write_kernel_files
from edgecomp.backends.cortex_m import build, write_firmware
from edgecomp.options import CodegenOptions
from edgecomp.targets import load_target

pytestmark = pytest.mark.toolchain

SCALES = np.concatenate([np.float32([1.0, 0.5, 1 / 3, 0.1, 2.0 ** -20, 3e-7, 7.5, 1e3]),
                         (10.0 ** np.random.default_rng(0).uniform(-7, 3, 120)).astype(np.float32)])


def ort_dequantize(q: np.ndarray, scale: np.float32, zp: int) -> np.ndarray:
    """ONNX Runtime's DequantizeLinear on q (int8)."""
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    graph = helper.make_graph([node], "dq", [helper.make_tensor_value_info("q", TensorProto.INT8, [q.size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [q.size])],
                              [numpy_helper.from_array(np.float32(scale), "s"),
                               numpy_helper.from_array(np.int8(zp), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"q": q})[0]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")
def test_dequantize_gives_ort_and_tflm_floats(tmp_path):
    write_kernel_files(tmp_path, bundle_names("reference"))  # as in a bundle
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o", "libk.so",
                    "ec_kernels.c", "-lm"], cwd=tmp_path, check=True)
    lib = ctypes.CDLL(str(tmp_path / "libk.so"))
    lib.ec_dequantize_s8_f32.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_float,
                                         ctypes.c_int32]
    q = np.arange(-128, 128, dtype=np.int8)
    y = np.zeros(q.size, np.float32)
    for i, scale in enumerate(SCALES):
        for zp in (-128, -1, 0, 5, 127) if i % 8 else range(-128, 128):
            lib.ec_dequantize_s8_f32(q.ctypes.data, y.ctypes.data, q.size, float(scale), zp)
            np.testing.assert_array_equal(y.view(np.uint32), nx.dequantize(q, scale, zp).view(np.uint32))  # TFLM
            if zp in (-128, 0, 127):
                np.testing.assert_array_equal(y.view(np.uint32), ort_dequantize(q, scale, zp).view(np.uint32))


def io_graph() -> ir.Graph:
    """float in -> quantize -> int8 fully connected -> dequantize -> float out."""
    rng = np.random.default_rng(1)
    qx, qy = ir.QuantParams([0.05], [3]), ir.QuantParams([0.2], [-1])
    ts = [ir.Tensor("x", (1, 16), "float32"), ir.Tensor("xq", (1, 16), "int8", qx),
          ir.Tensor("w", (8, 16), "int8", ir.QuantParams(np.full(8, 0.01, np.float32), np.zeros(8, np.int32), axis=0),
                    data=rng.integers(-127, 128, size=(8, 16), dtype=np.int8)),
          ir.Tensor("b", (8,), "int32", data=rng.integers(-500, 500, size=8).astype(np.int32)),
          ir.Tensor("yq", (1, 8), "int8", qy), ir.Tensor("y", (1, 8), "float32")]
    nodes = [ir.Node("quant", "quantize", ["x"], ["xq"]),
             ir.Node("fc", "fully_connected", ["xq", "w", "b"], ["yq"], {"act": (-128, 127)}),
             ir.Node("dequant", "dequantize", ["yq"], ["y"])]
    g = ir.Graph("io", {t.name: t for t in ts}, nodes, ["x"], ["y"], {"source": "test"})
    g.validate()
    return g


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_cortex_m4_firmware_of_an_int8_model_has_no_double_routines(tmp_path):
    b = tmp_path / "b"
    generate(io_graph(), b, name="io", options=CodegenOptions(kernels="dsp", dsp=True))
    write_firmware(b, load_target("cortex-m4"), "io")
    elf = build(b, "cortex-m4", build_dir=tmp_path / "build").elf
    syms = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout.split()
    assert {"ec_quantize_f32_s8", "ec_dequantize_s8_f32", "ec_fully_connected_s8_dsp"} <= set(syms)
    # libgcc's double routines: __aeabi_dmul, __aeabi_d2f, __aeabi_i2d, ..., __adddf3, __truncdfsf2, ...
    doubles = [s for s in syms if re.fullmatch(r"__aeabi_d\w+|__aeabi_\w+2d|__\w*df\w*", s)]
    assert doubles == []
