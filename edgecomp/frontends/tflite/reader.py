"""Reading a TFLite flatbuffer into an ir.Graph (int8 or float32): tensors, buffers, operators.

Reads the file with the ``tflite`` schema package, checking every offset, length
and size against the file before using it, so a corrupt or hostile file gives a
:class:`ModelError` instead of a crash, a hang or a huge allocation.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ... import ir
from ...errors import EdgecompError, ModelError, UnsupportedError
from . import (ops_activation, ops_conv, ops_data, ops_elementwise, ops_pool, ops_quant, ops_recurrent,  # noqa: F401
               ops_reduce, ops_resize, ops_shape)  # (fill TFLITE_OPS)
from . import ops_attention  # noqa: F401,E402  (BATCH_MATMUL)
from .registry import (
    CONV_2D,
    DEPTHWISE_CONV_2D,
    DEQUANTIZE,
    FULLY_CONNECTED,
    TFLITE_OPS,
    builtin_name,
)

MAX_ELEMENTS = 1 << 28  # no tensor in a microcontroller model comes near this
MAX_RANK = 8
#: Strides, dilations, filter sizes and depth multipliers must lie in [1, ATTR_LIMIT] (the ONNX
#: frontend's bound): the kernels' int32 index arithmetic stays far from overflow.
ATTR_LIMIT = 1 << 16
_ZP_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (0, 0), "int32": (0, 0)}

# tflite.TensorType
_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 17: "int4"}
_NP_TYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
             "int64": np.int64, "int16": np.int16, "int8": np.int8}
# tflite.ActivationFunctionType
_ACT = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
_ACT_NAMES = {4: "TANH", 5: "SIGN_BIT"}
SAME, VALID = 0, 1


def _unpack_int4(data: bytes, shape: tuple, r, tname: str) -> np.ndarray:
    """TFLite INT4 constants: two values a byte, element 2i in the low nibble (TFLM's
    UnpackDenseInt4IntoInt8), as int8 values in [-8, 7]."""
    n = math.prod(shape)
    if len(data) != (n + 1) // 2:
        raise r.bad(f"int4 constant {tname!r} has {len(data)} bytes, its shape {list(shape)} needs {(n + 1) // 2}")
    b = np.frombuffer(data, dtype=np.uint8)
    lo = ((b & 0x0F).astype(np.int16) ^ 8) - 8
    hi = ((b >> 4).astype(np.int16) ^ 8) - 8
    return np.stack([lo, hi], 1).reshape(-1)[:n].astype(np.int8).reshape(shape)


class _Reader:
    """Bounds-checked access to one flatbuffer model."""

    def __init__(self, buf: bytes, where: str):
        self.buf, self.where = buf, where

    def bad(self, what: str) -> ModelError:
        return ModelError(f"corrupt TFLite file: {what}", where=self.where,
                          fix="Re-export the model with the TensorFlow Lite converter")

    def count(self, n: int, what: str, item_bytes: int = 4) -> int:
        if n < 0 or n * item_bytes > len(self.buf):
            raise self.bad(f"{what} claims {n} entries, more than the file can hold")
        return n


def load_tflite(path: str | Path | bytes) -> ir.Graph:
    """Read a .tflite file (int8 or float32) into an IR graph; ModelError/UnsupportedError on problems."""
    if isinstance(path, (bytes, bytearray)):
        buf, where, name = bytes(path), "<bytes>", "model"
    else:
        p = Path(path)
        where, name = str(p), p.stem
        try:
            buf = p.read_bytes()
        except IsADirectoryError:
            raise ModelError(f"{p} is a folder, not a TFLite file", fix="Give the path of a .tflite file") from None
        except FileNotFoundError:
            raise ModelError(f"model file {p} does not exist", fix="Check the path") from None
        except OSError as e:
            raise ModelError(f"cannot read {p}: {e.strerror}", fix="Check the path and permissions") from None
    if len(buf) == 0:
        raise ModelError("the TFLite file is empty", where=where, fix="Give a complete .tflite file")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError("not a TFLite file (no 'TFL3' flatbuffer identifier)", where=where,
                         fix="Give a .tflite file written by the TensorFlow Lite converter")
    try:
        return _Importer(buf, where, name).run()
    except EdgecompError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            AttributeError, KeyError, MemoryError, RecursionError) as e:
        raise ModelError(f"corrupt TFLite file ({type(e).__name__}: {e})", where=where,
                         fix="Re-export the model with the TensorFlow Lite converter") from None


class _Importer:
    def __init__(self, buf: bytes, where: str, name: str):
        import tflite
        self.tfl = tflite
        self.r = _Reader(buf, where)
        self.buf, self.where, self.name = buf, where, name
        root = struct.unpack_from("<I", buf, 0)[0]
        if root + 4 > len(buf):
            raise self.r.bad("root table offset points outside the file")
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.tensors: dict[str, ir.Tensor] = {}
        self._int4: set[str] = set()  # INT4 weight tensors (their layers keep them packed)
        self.names: dict[int, str] = {}
        self.nodes: list[ir.Node] = []

    # -- tensors ---------------------------------------------------------------------------
    def _buffer_bytes(self, index: int) -> bytes | None:
        m, r = self.model, self.r
        if index == 0:
            return None
        if index < 0 or index >= self._n_buffers:
            raise r.bad(f"buffer index {index} out of range (the file has {self._n_buffers})")
        b = m.Buffers(index)
        if b is None:
            return None
        off, size = int(b.Offset()), int(b.Size())
        if off > 1:  # large-model format: data after the flatbuffer
            if off + size > len(self.buf):
                raise r.bad(f"buffer {index} lies outside the file")
            return self.buf[off:off + size] if size else None
        n = r.count(b.DataLength(), f"buffer {index}", 1)
        if n == 0:
            return None
        data = b.DataAsNumpy()
        return bytes(data.tobytes())

    def _check_buffer(self, index: int) -> None:
        """Every buffer must lie inside the file (catches truncated files early, copies nothing)."""
        b = self.model.Buffers(index)
        if b is None:
            raise self.r.bad(f"buffer {index} is missing")
        off, size = int(b.Offset()), int(b.Size())
        if off > 1 and off + size > len(self.buf):
            raise self.r.bad(f"buffer {index} lies outside the file (the file may be truncated)")
        n = b.DataLength()
        if n:
            o = b._tab.Offset(4)
            start = b._tab.Vector(o)
            if n < 0 or start + n > len(self.buf):
                raise self.r.bad(f"buffer {index} lies outside the file (the file may be truncated)")

    def _tensor(self, sg, i: int) -> str:
        if i in self.names:
            return self.names[i]
        r = self.r
        if i < 0 or i >= self._n_tensors:
            raise r.bad(f"tensor index {i} out of range (the subgraph has {self._n_tensors})")
        t = sg.Tensors(i)
        raw_name = t.Name()
        tname = raw_name.decode("utf-8", "replace") if raw_name else f"tensor_{i}"
        while tname in self._raw:  # TFLite names need not be unique
            tname = f"{tname}_{i}"
        r.count(t.ShapeLength(), f"shape of tensor {tname!r}")
        if t.ShapeLength() > MAX_RANK:
            raise r.bad(f"tensor {tname!r} has rank {t.ShapeLength()}")
        shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else []))
        if any(d < 0 for d in shape):
            if shape and shape[0] == -1 and all(d > 0 for d in shape[1:]):
                shape = (1,) + shape[1:]  # dynamic batch: run one sample at a time
            else:
                raise r.bad(f"tensor {tname!r} has invalid shape {list(shape)}")
        if math.prod(shape) > MAX_ELEMENTS:
            raise r.bad(f"tensor {tname!r} has an absurd shape {list(shape)}")
        if 0 in shape:
            raise ModelError(f"tensor {tname!r} has a zero dimension (shape {list(shape)}): it holds no data",
                             where=self.where, fix="Export with static, non-empty shapes (batch size 1)")
        ttype = t.Type()
        dtype = _TYPES.get(ttype)
        if dtype is None:
            raise UnsupportedError(f"tensor {tname!r} has TFLite type {ttype}", where=self.where,
                                   fix="Use an int8 or float32 model")
        quant = self._quant(t, tname, shape)
        data = self._buffer_bytes(int(t.Buffer()))
        arr = None
        if dtype == "int4":  # two per byte, low nibble first: unpacked to int8, packed again by the C backend
            arr = _unpack_int4(data, shape, r, tname) if data is not None else None
            dtype = "int8"
            self._int4.add(tname)
        elif data is not None:
            item = np.dtype(_NP_TYPES[dtype]).itemsize
            if len(data) != math.prod(shape) * item:
                raise r.bad(f"constant {tname!r} has {len(data)} bytes, its shape {list(shape)} needs "
                            f"{math.prod(shape) * item}")
            arr = np.frombuffer(data, dtype=_NP_TYPES[dtype]).reshape(shape).copy()
        if quant is not None:
            self._check_quant(tname, dtype, quant, constant=arr is not None)
        self.names[i] = tname
        self._raw[tname] = (dtype, shape, quant, arr)
        return tname

    def _check_quant(self, tname: str, dtype: str, quant: ir.QuantParams, constant: bool) -> None:
        """Scales the kernels divide by and zero points that fit the type (TFLite's int8 spec)."""
        if not constant and np.any(quant.scale <= 0):
            raise ModelError(f"tensor {tname!r} has a quantization scale of {float(np.min(quant.scale)):g}; "
                             "an activation's scale must be positive", where=self.where,
                             fix="Re-export the model with the TensorFlow Lite converter")
        if np.any(quant.scale > 1e30) or (np.any(quant.scale < 1e-30) and not constant):
            raise ModelError(f"tensor {tname!r} has an absurd quantization scale", where=self.where,
                             fix="Re-export the model with the TensorFlow Lite converter")
        lo, hi = _ZP_RANGE.get(dtype, (-(1 << 31), (1 << 31) - 1))
        if dtype == "int32" and not constant:
            lo, hi = -(1 << 31), (1 << 31) - 1
        if np.any(quant.zero_point < lo) or np.any(quant.zero_point > hi):
            raise ModelError(f"tensor {tname!r} ({dtype}) has zero point "
                             f"{int(quant.zero_point[np.argmax((quant.zero_point < lo) | (quant.zero_point > hi))])}"
                             f", outside [{lo}, {hi}]", where=self.where,
                             fix="Re-export the model with the TensorFlow Lite converter (int8: zero points in "
                                 "[-128, 127]; int16 and biases: 0)")

    def _quant(self, t, tname: str, shape: tuple) -> ir.QuantParams | None:
        q = t.Quantization()
        if q is None:
            return None
        ns = self.r.count(q.ScaleLength(), f"scales of {tname!r}")
        nz = self.r.count(q.ZeroPointLength(), f"zero points of {tname!r}", 8)
        if ns == 0:
            return None
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if nz else np.zeros(ns, dtype=np.int64)
        if nz not in (1, ns):
            raise self.r.bad(f"tensor {tname!r} has {ns} scales but {nz} zero points")
        if not np.all(np.isfinite(scale)) or np.any(scale < 0):
            raise self.r.bad(f"tensor {tname!r} has invalid scales")
        if np.any(np.abs(zp) > (1 << 31) - 1):
            raise self.r.bad(f"tensor {tname!r} has invalid zero points")
        axis = None
        if ns > 1:
            axis = int(q.QuantizedDimension())
            if not 0 <= axis < len(shape) or shape[axis] != ns:
                raise self.r.bad(f"tensor {tname!r}: {ns} scales do not match axis {axis} of {list(shape)}")
        return ir.QuantParams(scale, zp.astype(np.int32), axis)

    def _define(self, name: str) -> None:
        dtype, shape, quant, arr = self._raw[name]
        if name in self.tensors:
            return
        if dtype not in ir.DTYPES:
            raise UnsupportedError(f"tensor {name!r} is {dtype}", where=self.where,
                                   fix="Use a fully int8 (or float32) model: TFLiteConverter with "
                                       "inference_input_type/inference_output_type = tf.int8")
        self.tensors[name] = ir.Tensor(name, shape, dtype, quant, arr)

    # -- operators -------------------------------------------------------------------------
    def run(self) -> ir.Graph:
        m, r = self.model, self.r
        self._raw: dict[str, tuple] = {}
        n_codes = r.count(m.OperatorCodesLength(), "operator code table")
        self._n_buffers = r.count(m.BuffersLength(), "buffer table")
        if r.count(m.SubgraphsLength(), "subgraph table") < 1:
            raise r.bad("no subgraph")
        for i in range(self._n_buffers):
            self._check_buffer(i)
        sg = m.Subgraphs(0)
        self._n_tensors = r.count(sg.TensorsLength(), "tensor table")
        n_ops = r.count(sg.OperatorsLength(), "operator list")
        codes = []
        for i in range(n_codes):
            oc = m.OperatorCodes(i)
            codes.append(max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode())))
        ops = []
        unsupported: dict[str, int] = {}
        for k in range(n_ops):
            op = sg.Operators(k)
            ci = int(op.OpcodeIndex())
            if not 0 <= ci < n_codes:
                raise r.bad(f"operator {k} uses opcode index {ci}, the table has {n_codes}")
            if codes[ci] not in TFLITE_OPS:
                label = builtin_name(codes[ci])
                if codes[ci] == 32:  # CUSTOM
                    cc = m.OperatorCodes(ci).CustomCode()
                    label = f"CUSTOM({cc.decode('utf-8', 'replace') if cc else '?'})"
                unsupported[label] = unsupported.get(label, 0) + 1
            ops.append((op, codes[ci]))
        if unsupported:
            listed = ", ".join(f"{k} (x{v})" for k, v in sorted(unsupported.items()))
            from ..alternatives import refusal
            raise refusal(f"the model uses TFLite ops edgecomp does not support: {listed}", self.where,
                          sorted(unsupported), "tflite", [o.name for o in TFLITE_OPS.values()])
        n_in = r.count(sg.InputsLength(), "subgraph inputs")
        n_out = r.count(sg.OutputsLength(), "subgraph outputs")
        if n_in < 1 or n_out < 1:
            raise r.bad("the subgraph has no inputs or no outputs")
        inputs = [self._tensor(sg, int(i)) for i in sg.InputsAsNumpy()]
        outputs = [self._tensor(sg, int(i)) for i in sg.OutputsAsNumpy()]
        for k, (op, code) in enumerate(ops):
            self._operator(sg, k, op, code)
        for t in inputs + outputs:
            self._define(t)
        g = ir.Graph(self.name, self.tensors, self.nodes, inputs, outputs,
                     meta={"source": "tflite", "input_layout": "NHWC", "input_names": list(inputs),
                           "output_names": list(outputs), "tflite_version": int(m.Version())})
        try:
            g.validate()
        except ValueError as e:
            raise r.bad(str(e)) from None
        return g

    def _io(self, sg, op, k: int) -> tuple[list[str], list[str]]:
        r = self.r
        ni = r.count(op.InputsLength(), f"inputs of operator {k}")
        no = r.count(op.OutputsLength(), f"outputs of operator {k}")
        ins = [self._tensor(sg, int(i)) if int(i) >= 0 else "" for i in (op.InputsAsNumpy() if ni else [])]
        outs = [self._tensor(sg, int(i)) for i in (op.OutputsAsNumpy() if no else [])]
        if not outs:
            raise r.bad(f"operator {k} has no output")
        return ins, outs

    def _options(self, op, cls):
        table = op.BuiltinOptions()
        if table is None:
            return None
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    def _act(self, code: int, out: str, where: str) -> tuple:
        if code not in _ACT:
            raise UnsupportedError(f"fused activation {_ACT_NAMES.get(code, code)}", where=where,
                                   fix="Use NONE, RELU, RELU6 or RELU_N1_TO_1")
        dtype, _, quant, _ = self._raw[out]
        if dtype != "float32" and quant is None:
            raise ModelError(f"quantized tensor {out!r} has no quantization parameters", where=where,
                             fix="Re-export a fully quantized model")
        return ir.activation_range(_ACT[code], quant, dtype if dtype in ("int8", "int16", "float32") else "int8")

    def _add(self, op: str, ins: list[str], outs: list[str], k: int, **attrs) -> None:
        for t in ins + outs:
            self._define(t)
        self.nodes.append(ir.Node(f"{op}_{k}", op, ins, outs, attrs))

    def _check_dtypes(self, ins: list[str], outs: list[str], where: str) -> None:
        for t in ins + outs:
            dtype = self._raw[t][0]
            if dtype == "int64" and self._raw[t][3] is not None and t in ins:
                continue  # a constant index operand (sizes, axes): read by the op's lowering, not an IR tensor
            if dtype not in ("int8", "float32", "int32"):
                raise UnsupportedError(f"tensor {t!r} is {dtype}", where=where,
                                       fix="Use a fully int8 model (int8 input and output) or a float32 model")

    def shape(self, name: str) -> tuple:
        return self._raw[name][1]

    def _operator(self, sg, k: int, op, code: int) -> None:
        spec = TFLITE_OPS[code]
        ins, outs = self._io(sg, op, k)
        where = f"operator {k} ({spec.name})"
        if len([i for i in ins if i]) < spec.inputs:
            raise self.r.bad(f"{where} has {len(ins)} inputs, needs {spec.inputs}")
        if code == DEQUANTIZE and self._raw[ins[0]][3] is not None:
            self._fold_dequantize(ins[0], outs[0])
            return
        hybrid = self._hybrid(code, ins, outs, where)
        if spec.check_dtypes:
            self._check_dtypes([i for i in ins if i], outs, where)
        spec.lower(self, op, k, code, ins, outs, where, hybrid)

    def _bounded(self, where: str, **attrs: tuple) -> None:
        for name, vals in attrs.items():
            if any(not 1 <= int(v) <= ATTR_LIMIT for v in vals):
                raise ModelError(f"{where}: {name} {'x'.join(str(int(v)) for v in vals)} is out of range "
                                 f"[1, {ATTR_LIMIT}]", where=self.where,
                                 fix="Re-export the model with the TensorFlow Lite converter")

    def _hybrid(self, code: int, ins: list[str], outs: list[str], where: str) -> dict | None:
        """A float op with int8 constant weights (dynamic-range "hybrid" model): dequantize the weights.

        LiteRT runs such a CONV_2D by quantizing its input per sample on the fly; the returned
        ``{"weight_scale": s}`` lets interp.py reproduce that (other backends may ignore it and run
        plain float32 with the dequantized weights).
        """
        if code not in (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) or len(ins) < 2:
            return None
        w = ins[1]
        dtype, shape, quant, arr = self._raw[w]
        if self._raw[outs[0]][0] != "float32" or dtype != "int8" or arr is None:
            return None
        if code != CONV_2D or quant is None or quant.scale.size != 1 or int(quant.zero_point[0]) != 0:
            raise UnsupportedError(f"hybrid (dynamic-range quantized) {builtin_name(code)} with int8 weights "
                                   "and float activations", where=where,
                                   fix="Convert the model fully to int8, or keep it fully float32")
        scale = float(quant.scale[0])
        self._raw[w] = ("float32", shape, None, (np.float32(scale) * arr.astype(np.float32)).astype(np.float32))
        return {"weight_scale": scale}

    def _check_same_quant(self, a: str, b: str, where: str) -> None:
        qa, qb = self._raw[a][2], self._raw[b][2]
        if qa is None and qb is None:
            return
        if qa is None or qb is None or not (np.array_equal(qa.scale, qb.scale)
                                            and np.array_equal(qa.zero_point, qb.zero_point)):
            raise UnsupportedError(f"tensors {a!r} and {b!r} must share quantization parameters", where=where,
                                   fix="Quantize with the TFLite converter (it keeps them equal for this op)")

    def _pad(self, padding: int, xs: tuple, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int) -> tuple:
        if padding == VALID:
            return (0, 0, 0, 0)
        if padding != SAME:
            raise self.r.bad(f"unknown padding type {padding}")
        t, b = ir.same_padding(xs[1], kh, sh, dh)
        left, right = ir.same_padding(xs[2], kw, sw, dw)
        return (t, left, b, right)

    def _fold_dequantize(self, src: str, dst: str) -> None:
        """DEQUANTIZE of a constant (float16 or int8 weights): fold into a float32 constant."""
        dtype, shape, quant, arr = self._raw[src]
        if dtype == "float16":
            val = arr.astype(np.float32)
        elif quant is not None:
            axis = quant.axis if quant.per_channel else None
            s, z = quant.scale.astype(np.float64), quant.zero_point.astype(np.float64)
            if axis is not None:
                bshape = [1] * len(shape)
                bshape[axis] = -1
                s, z = s.reshape(bshape), z.reshape(bshape)
            val = (s * (arr.astype(np.float64) - z)).astype(np.float32)
        else:
            val = arr.astype(np.float32)
        d_shape = self._raw[dst][1]
        self._raw[dst] = ("float32", d_shape, None, val.reshape(d_shape))
