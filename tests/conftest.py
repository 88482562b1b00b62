"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The MLPerf Tiny reference models: $EDGECOMP_MLPERF_DIR, else ../shared/benchmarks/mlperf_tiny beside
#: the repository.  Without them the tests that need them skip (one reason, below); the others -- TFLM
#: equivalence of every op included (test_tflm_selfbuilt.py) -- run on models the tests build.
MLPERF_DIR = Path(os.environ.get("EDGECOMP_MLPERF_DIR") or
                  Path(__file__).resolve().parents[2] / "shared/benchmarks/mlperf_tiny")
MLPERF_FILES = ("ad01_int8.tflite", "ad01_fp32.tflite", "kws_ref_model.tflite", "kws_ref_model_float32.tflite",
                "pretrainedResnet_quant.tflite", "pretrainedResnet.tflite", "vww_96_int8.tflite", "vww_96_float.tflite")


def mlperf_missing() -> str | None:
    """Why the MLPerf Tiny models cannot be used, or None when they are there."""
    missing = [f for f in MLPERF_FILES if not (MLPERF_DIR / f).is_file()]
    if missing:
        return (f"MLPerf Tiny models not found in {MLPERF_DIR} ({len(missing)} of {len(MLPERF_FILES)} files missing): set "
                "EDGECOMP_MLPERF_DIR to the folder that holds them")
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items):
    """A test that runs QEMU builds its firmware first: `qemu` implies `toolchain`, so
    `-m "not toolchain"` leaves out the QEMU tests too (pyproject.toml registers the markers)."""
    for item in items:
        if item.get_closest_marker("qemu") and not item.get_closest_marker("toolchain"):
            item.add_marker(pytest.mark.toolchain)


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    """The MLPerf Tiny reference models; the test skips with one clear reason when they are absent."""
    why = mlperf_missing()
    if why:
        pytest.skip(why)
    return MLPERF_DIR


# -- tiny TFLite models built in memory (for op-level tests against TFLite Micro) -------------

_TFL_TYPES = {"float32": 0, "float16": 1, "int32": 2, "int8": 9, "int16": 7, "uint8": 3, "int64": 4, "int4": 17}


def build_tflite(tensors: list[dict], ops: list[dict], inputs: list[int], outputs: list[int],
                 version: int = 3) -> bytes:
    """Write a one-subgraph .tflite flatbuffer.

    tensors: dicts with name, shape, dtype ("int8", "float32", "int32", ...), optional data
    (numpy array -> a constant), scale / zero_point (lists), axis (quantized dimension) and
    variable (True for a state tensor that persists between invocations, e.g. an LSTM's).
    ops: dicts with op (BuiltinOperator name, e.g. "AVERAGE_POOL_2D"), inputs, outputs (tensor
    indices, -1 for none) and options = (OptionsTableName, {"Field": value}) using the schema's
    CamelCase field names, e.g. ("Pool2DOptions", {"Padding": 0, "StrideW": 2, ...}).
    """
    import importlib

    import flatbuffers
    import numpy as np
    import tflite

    b = flatbuffers.Builder(1024)

    def _m(name: str):
        return importlib.import_module(f"tflite.{name}")

    def ivec(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(int(v))
        return b.EndVector()

    def table(mod_name: str, fields: dict):
        mod = importlib.import_module(f"tflite.{mod_name}")
        mod.Start(b)
        for k, v in fields.items():
            getattr(mod, f"Add{k}")(b, v)
        return mod.End(b)

    # buffers: 0 is the empty sentinel, then one per constant
    buf_data: list[bytes | None] = [None]
    buf_index = []
    for t in tensors:
        if t.get("data") is not None:
            buf_index.append(len(buf_data))
            buf_data.append(np.ascontiguousarray(t["data"]).tobytes())
        else:
            buf_index.append(0)
    buf_offsets = []
    for data in buf_data:
        vec = None
        if data:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        _m("Buffer").Start(b)
        if vec is not None:
            _m("Buffer").AddData(b, vec)
        buf_offsets.append(_m("Buffer").End(b))

    t_offsets = []
    for t, bi in zip(tensors, buf_index):
        name = b.CreateString(t["name"])
        shape = ivec(_m("Tensor").StartShapeVector, t["shape"])
        q = None
        if t.get("scale") is not None:
            _m("QuantizationParameters").StartScaleVector(b, len(t["scale"]))
            for v in reversed(t["scale"]):
                b.PrependFloat32(float(v))
            sv = b.EndVector()
            zps = t.get("zero_point", [0] * len(t["scale"]))
            _m("QuantizationParameters").StartZeroPointVector(b, len(zps))
            for v in reversed(zps):
                b.PrependInt64(int(v))
            zv = b.EndVector()
            _m("QuantizationParameters").Start(b)
            _m("QuantizationParameters").AddScale(b, sv)
            _m("QuantizationParameters").AddZeroPoint(b, zv)
            _m("QuantizationParameters").AddQuantizedDimension(b, int(t.get("axis", 0)))
            q = _m("QuantizationParameters").End(b)
        _m("Tensor").Start(b)
        _m("Tensor").AddShape(b, shape)
        _m("Tensor").AddType(b, _TFL_TYPES[t["dtype"]])
        _m("Tensor").AddBuffer(b, bi)
        _m("Tensor").AddName(b, name)
        if q is not None:
            _m("Tensor").AddQuantization(b, q)
        if t.get("variable"):
            _m("Tensor").AddIsVariable(b, True)
        t_offsets.append(_m("Tensor").End(b))

    codes = sorted({o["op"] for o in ops})
    op_offsets = []
    for o in ops:
        opts = None
        if o.get("options"):
            opts = table(*o["options"])
        ins = ivec(_m("Operator").StartInputsVector, o["inputs"])
        outs = ivec(_m("Operator").StartOutputsVector, o["outputs"])
        _m("Operator").Start(b)
        _m("Operator").AddOpcodeIndex(b, codes.index(o["op"]))
        _m("Operator").AddInputs(b, ins)
        _m("Operator").AddOutputs(b, outs)
        if opts is not None:
            _m("Operator").AddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, o["options"][0]))
            _m("Operator").AddBuiltinOptions(b, opts)
        op_offsets.append(_m("Operator").End(b))

    def ovec(start, offs):
        start(b, len(offs))
        for off in reversed(offs):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tv = ovec(_m("SubGraph").StartTensorsVector, t_offsets)
    ov = ovec(_m("SubGraph").StartOperatorsVector, op_offsets)
    iv = ivec(_m("SubGraph").StartInputsVector, inputs)
    outv = ivec(_m("SubGraph").StartOutputsVector, outputs)
    _m("SubGraph").Start(b)
    _m("SubGraph").AddTensors(b, tv)
    _m("SubGraph").AddInputs(b, iv)
    _m("SubGraph").AddOutputs(b, outv)
    _m("SubGraph").AddOperators(b, ov)
    sg = _m("SubGraph").End(b)

    code_offsets = []
    for c in codes:
        num = getattr(tflite.BuiltinOperator, c)
        _m("OperatorCode").Start(b)
        _m("OperatorCode").AddDeprecatedBuiltinCode(b, min(num, 127))
        _m("OperatorCode").AddBuiltinCode(b, num)
        _m("OperatorCode").AddVersion(b, 1)
        code_offsets.append(_m("OperatorCode").End(b))
    cv = ovec(_m("Model").StartOperatorCodesVector, code_offsets)
    sgv = ovec(_m("Model").StartSubgraphsVector, [sg])
    bv = ovec(_m("Model").StartBuffersVector, buf_offsets)
    desc = b.CreateString("edgecomp test model")
    _m("Model").Start(b)
    _m("Model").AddVersion(b, version)
    _m("Model").AddOperatorCodes(b, cv)
    _m("Model").AddSubgraphs(b, sgv)
    _m("Model").AddDescription(b, desc)
    _m("Model").AddBuffers(b, bv)
    b.Finish(_m("Model").End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="session")
def tflite_builder():
    """The :func:`build_tflite` function (tiny in-memory .tflite models)."""
    return build_tflite
