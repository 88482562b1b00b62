"""256-entry int8 tables: what an int8 -> int8 unary op computes for every input byte.

An int8 unary op maps 256 values to 256 values, so the IR runs every one of them as one op,
``lut``, whose table is built here at compile time (``passes/requantize.py`` calls
:func:`lut_table` once per node; the interpreter and the C emitter read the result).  Tables are
indexed by the input byte as an unsigned number: ``table[uint8(x)]`` (0..127 are x = 0..127,
128..255 are x = -128..-1), which is what the C kernel does with ``(uint8_t)x``.

Two kinds of builders:

* TFLite builtins, ported from TensorFlow Lite Micro's integer kernels operation for operation
  (so a table is bit-exact with TFLM by construction): LOGISTIC and TANH (gemmlowp fixed point,
  input in Q4.27), HARD_SWISH (int16 fixed point), LEAKY_RELU (two multipliers), RELU (a
  requantize and a clamp), RELU6 (a clamp in the input's domain, TFLM does not rescale),
  RELU_N1_TO_1 (TFLM has none: LiteRT's, a requantize and a clamp).  Their parameters are formed
  with the float / double casts of TFLM's Prepare functions.
* ONNX QDQ islands (``dequantize -> f -> quantize``): the float function on the 256 dequantized
  points (float32, as DequantizeLinear), stored as float32 and quantized as QuantizeLinear does
  (float32 division, round half to even, zero point, saturate).  ONNX Runtime's own kernels
  approximate some functions (MLAS sigmoid, tanh, erf): where they fall on the other side of a
  rounding boundary the result differs by 1 LSB.

:func:`float_fn` is also the float32 semantics of the IR's ``unary`` op.
"""
from __future__ import annotations

import math

import numpy as np

from . import numerics as nx
from .errors import UnsupportedError

#: The int8 value of each table index.
INPUTS = np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8).astype(np.int64)

#: Unary float functions (the IR's ``unary`` op and the ONNX tables) and their attributes.
FLOAT_FNS = ("sigmoid", "tanh", "hard_sigmoid", "hard_swish", "leaky_relu", "gelu", "gelu_tanh", "erf",
             "silu")
#: TFLite int8 builtins with a table builder ported from TFLM.
TFLITE_FNS = ("logistic", "tanh", "hard_swish", "leaky_relu", "relu", "relu6", "relu_n1_to_1")


def _f32(x) -> np.float32:
    return np.float32(x)


def lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The table applied to int8 values."""
    return np.asarray(table, np.int8)[np.asarray(x).astype(np.int8).view(np.uint8)]


def _clamp8(v) -> np.ndarray:
    return np.clip(np.asarray(v, np.int64), -128, 127).astype(np.int8)


# -- float functions ----------------------------------------------------------------------------

def float_fn(fn: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    """The float function ``fn`` in float64 (the caller stores float32)."""
    x = np.asarray(x, np.float64)
    if fn == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)) without overflow
    if fn == "silu":
        return x * 0.5 * (1.0 + np.tanh(0.5 * x))
    if fn == "tanh":
        return np.tanh(x)
    if fn == "hard_sigmoid":
        a, b = float(_f32(attrs.get("alpha", 0.2))), float(_f32(attrs.get("beta", 0.5)))
        return np.clip(a * x + b, 0.0, 1.0)
    if fn == "hard_swish":
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if fn == "leaky_relu":
        a = float(_f32(attrs.get("alpha", 0.01)))
        return np.where(x > 0, x, a * x)
    if fn == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if fn == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if fn == "erf":
        return _erf(x)
    raise UnsupportedError(f"unary function {fn!r}", fix=f"Use one of {', '.join(FLOAT_FNS)}")


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x) if np.size(x) else np.asarray(x, np.float64)


def quantize_linear(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """ONNX QuantizeLinear to int8: float32 y / scale, rounded half to even, + zero point, saturated."""
    v = np.asarray(y, np.float32) / _f32(scale)
    return _clamp8(np.rint(v).astype(np.float64).clip(-1e9, 1e9).astype(np.int64) + int(zero_point))


def float_step(step: dict, x: np.ndarray) -> np.ndarray:
    """One step of a chain of float functions (float32 in, float32 out, as ONNX Runtime's ops)."""
    fn = step["fn"]
    x = np.asarray(x, np.float32)
    if fn == "affine":
        return (x * _f32(step["scale"]) + _f32(step["bias"])).astype(np.float32)
    if fn == "clamp":
        return np.clip(x, _f32(step["lo"]), _f32(step["hi"])).astype(np.float32)
    return float_fn(fn, x.astype(np.float64), step).astype(np.float32)


def float_table(fn: str, attrs: dict, si: float, zi: int, so: float, zo: int) -> np.ndarray:
    """The table of ``quantize(f(dequantize(x)))`` as ONNX Runtime runs a QDQ island; with
    ``attrs["chain"]`` (a list of steps, see :func:`float_step`) the functions one after the other."""
    xf = (INPUTS - int(zi)).astype(np.float32) * _f32(si)  # DequantizeLinear, float32
    for step in attrs.get("chain") or [dict(attrs, fn=fn)]:
        xf = float_step(step, xf)
    return quantize_linear(xf, so, zo)


# -- TFLite builtins, as TFLM computes them --------------------------------------------------------

def _input_q4(si: float) -> tuple[int, int, int]:
    """LOGISTIC / TANH Prepare: (input multiplier, left shift, range radius) for inputs in Q4.27."""
    q, left = math.frexp(float(_f32(si)) * float(1 << 27))
    mult = int(nx.tflite_round(q * (1 << 31)))
    if mult >= 1 << 31 or left < 0:
        raise UnsupportedError(f"input scale {si} out of the range of TFLM's int8 LOGISTIC/TANH",
                               fix="Quantize the input with a scale between 2^-27 and 2^4")
    return mult, left, nx.calculate_input_radius(4, left, 31)


def _logistic(x, si, zi) -> np.ndarray:
    mult, left, radius = _input_q4(si)
    v = x - zi
    q4 = nx.multiply_by_quantized_multiplier(np.clip(v, -radius, radius), mult, left)
    out = nx.rounding_divide_by_pot(nx.logistic_fixed(q4, 4), 23) - 128
    out = np.clip(out, -128, 127)
    return np.where(v <= -radius, -128, np.where(v >= radius, 127, out))


def _tanh(x, si, zi) -> np.ndarray:
    mult, left, radius = _input_q4(si)
    v = x - zi
    q4 = nx.multiply_by_quantized_multiplier(np.clip(v, -radius, radius), mult, left)
    out = np.clip(nx.rounding_divide_by_pot(nx.tanh_fixed(q4, 4), 24), -128, 127)
    return np.where(v <= -radius, -128, np.where(v >= radius, 127, out))


def _i16(v) -> np.ndarray:
    return ((np.asarray(v, np.int64) + 32768) & 0xFFFF) - 32768


def _cdiv(a, d: int) -> np.ndarray:
    """C integer division (truncates toward zero)."""
    a = np.asarray(a, np.int64)
    return np.where(a >= 0, a // d, -((-a) // d))


def _srdhm16(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    q = _i16(_cdiv(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 1 << 15))
    return np.where((a == b) & (a == -32768), 32767, q)


def _sdhm16(a, b) -> np.ndarray:
    """TFLite's SaturatingDoublingHighMul for int16 (hard_swish.h): no rounding."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    q = _i16(_cdiv(a * b, 1 << 15))
    return np.where((a == b) & (a == -32768), 32767, q)


def _rdbpot16(x, e: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT on int16 (its mask cast to int16, as the template does)."""
    x = np.asarray(x, np.int64)
    mask = int(_i16((1 << e) - 1))
    threshold = (mask >> 1) + (x < 0)
    return _i16((x >> e) + ((x & mask) > threshold))


def _sat_lshift16(x, amount: int) -> np.ndarray:
    return np.clip(np.asarray(x, np.int64) * (1 << amount), -32768, 32767)


def _downscale16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


def hard_swish_params(si: float, so: float) -> dict:
    """HardSwishPrepare (TFLM): int16 multipliers and exponents, scales formed in float32."""
    hires = _f32(_f32(1.0 / 128.0) * _f32(si))
    m_out, e_out = nx.quantize_multiplier(float(_f32(hires / _f32(so))))
    m_rel, e_rel = nx.quantize_multiplier(float(_f32(hires / _f32(_f32(3.0) / _f32(32768.0)))))
    if e_out > 0:
        raise UnsupportedError(f"HARD_SWISH with output scale {so} below input scale {si} / 128",
                               fix="Quantize the output with a coarser scale (TFLM refuses this too)")
    return {"output_multiplier": _downscale16(m_out), "output_exponent": e_out,
            "reluish_multiplier": _downscale16(m_rel), "reluish_exponent": e_rel}


def _hard_swish(x, si, zi, so, zo) -> np.ndarray:
    p = hard_swish_params(si, so)
    hires = _i16(_i16(x - zi) * 128)
    pre_out = _srdhm16(hires, p["output_multiplier"])
    e = p["reluish_exponent"]
    rel = hires
    if e > 0:
        rel = _sat_lshift16(rel, e - 1)
    rel = _srdhm16(rel, p["reluish_multiplier"])
    if e > 0:
        rel = _sat_lshift16(rel, 1)
    if e < 0:
        rel = _rdbpot16(rel, -e)
    rel = _i16((rel + (1 << 15)) >> 1)
    out = _rdbpot16(_sdhm16(rel, pre_out), -p["output_exponent"])
    return np.clip(_i16(out + zo), -128, 127)


def _requant(v, real: float) -> np.ndarray:
    m, s = nx.quantize_multiplier(real)
    return nx.multiply_by_quantized_multiplier(v, m, s)


def _leaky_relu(x, si, zi, so, zo, alpha) -> np.ndarray:
    """QuantizeLeakyRelu: identity and alpha multipliers (a negative alpha through its magnitude)."""
    v = x - zi
    m_id, s_id = nx.quantize_multiplier(float(_f32(_f32(si) / _f32(so))))
    m_a, s_a = nx.quantize_multiplier(float(_f32(_f32(_f32(si) * _f32(alpha)) / _f32(so))))
    pos = nx.multiply_by_quantized_multiplier(v, m_id, s_id)
    neg = nx.multiply_by_quantized_multiplier(v, abs(m_a), s_a)
    neg = -neg if m_a < 0 else neg
    return np.clip(zo + np.where(v >= 0, pos, neg), -128, 127)


def _relu_x(x, si, zi, so, zo, lo: float, hi: float | None) -> np.ndarray:
    """ReluQuantized (TFLM's RELU, LiteRT's RELU_N1_TO_1): requantize, clamp to [lo, hi] in the output."""
    def bound(v):  # zp + roundf(v / scale) in float32
        return zo + int(nx.tflite_round(float(_f32(_f32(v) / _f32(so)))))
    y = zo + _requant(x - zi, float(_f32(_f32(si) / _f32(so))))
    amin = max(-128, bound(lo))
    amax = 127 if hi is None else min(127, bound(hi))
    return np.minimum(np.maximum(y, amin), amax)


def _relu6(x, si, zi) -> np.ndarray:
    """TFLM's Relu6Quantized: a clamp to [zp, quantized 6] in the input's own quantization."""
    six = int(np.clip(zi + nx.tflite_round(float(_f32(6.0) / _f32(si))), -128, 127))
    return np.clip(x, zi, six)


def tflite_table(fn: str, si: float, zi: int, so: float, zo: int, attrs: dict | None = None) -> np.ndarray:
    """The table of TFLite builtin ``fn`` (int8 in and out) as TFLM computes it."""
    attrs = attrs or {}
    x = INPUTS
    if fn == "logistic":
        y = _logistic(x, si, zi)
    elif fn == "tanh":
        y = _tanh(x, si, zi)
    elif fn == "hard_swish":
        y = _hard_swish(x, si, zi, so, zo)
    elif fn == "leaky_relu":
        y = _leaky_relu(x, si, zi, so, zo, float(attrs.get("alpha", 0.2)))
    elif fn == "relu":
        y = _relu_x(x, si, zi, so, zo, 0.0, None)
    elif fn == "relu_n1_to_1":
        y = _relu_x(x, si, zi, so, zo, -1.0, 1.0)
    elif fn == "relu6":
        y = _relu6(x, si, zi)
    else:
        raise UnsupportedError(f"TFLite int8 function {fn!r}", fix=f"Use one of {', '.join(TFLITE_FNS)}")
    return _clamp8(y)


def lut_table(attrs: dict, si: float, zi: int, so: float, zo: int) -> np.ndarray:
    """A ``lut`` node's table: ``attrs["table"]`` if given (a composed table), else built from
    ``attrs["fn"]`` ("tflite:<builtin>" or a float function of :data:`FLOAT_FNS`)."""
    if attrs.get("table") is not None:
        t = np.asarray(attrs["table"])
        if t.shape != (256,):
            raise UnsupportedError(f"a lookup table of {t.size} entries", fix="Give 256 entries")
        return t.astype(np.int8)
    fn = str(attrs.get("fn", ""))
    if fn.startswith("tflite:"):
        return tflite_table(fn[len("tflite:"):], si, zi, so, zo, attrs)
    return float_table(fn, attrs, si, zi, so, zo)
