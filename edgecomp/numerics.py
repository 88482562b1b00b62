"""TFLite integer primitives in numpy, as TensorFlow Lite Micro's reference kernels do them.

Every function works on scalars or arrays (vectorized), computes in int64 and
returns int32 values (as numpy arrays of dtype int64 unless noted; callers cast).
Names follow TFLite / gemmlowp: ``quantize_multiplier`` is ``QuantizeMultiplier``,
``saturating_rounding_doubling_high_mul`` is ``SaturatingRoundingDoublingHighMul`` and
so on.  Only the int32 fixed-point flavour is implemented (what int8 kernels need).
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x) -> np.ndarray:
    """Two's complement wrap of int64 values to the int32 range (what C does in practice)."""
    x = _i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def tflite_round(x: float) -> float:
    """std::round: half away from zero (exact, no x + 0.5 rounding error)."""
    t = math.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1 if x > 0 else -1
    return float(t)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Vectorized std::round in the input's float type (exact)."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0).astype(v.dtype)


# -- multipliers ---------------------------------------------------------------------------

def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """QuantizeMultiplier: real -> (Q31 multiplier in [2^30, 2^31) or 0, shift; >0 is left)."""
    d = float(real_multiplier)
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if abs(q_fixed) > (1 << 31):
        raise ValueError(f"quantize_multiplier: bad multiplier {d!r}")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # everything would be shifted out: flush tiny multipliers to zero
        shift, q_fixed = 0, 0
    if shift > 30:  # TFLite clamps huge multipliers to the largest representable one
        shift, q_fixed = 30, INT32_MAX
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(real_multiplier: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: 0 < m < 1 -> (multiplier, left shift <= 0)."""
    if not 0.0 < real_multiplier < 1.0:
        raise ValueError(f"multiplier {real_multiplier!r} is not in (0, 1)")
    m, s = quantize_multiplier(real_multiplier)
    if s > 0:
        raise ValueError(f"multiplier {real_multiplier!r} gives a left shift")
    return m, s


def quantize_multiplier_greater_than_one(real_multiplier: float) -> tuple[int, int]:
    """QuantizeMultiplierGreaterThanOne: m > 1 -> (multiplier, left shift >= 0)."""
    if not real_multiplier > 1.0:
        raise ValueError(f"multiplier {real_multiplier!r} is not > 1")
    m, s = quantize_multiplier(real_multiplier)
    if s < 0:
        raise ValueError(f"multiplier {real_multiplier!r} gives a right shift")
    return m, s


# -- gemmlowp primitives -------------------------------------------------------------------

def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32: round(a*b / 2^31), saturating."""
    a, b = np.broadcast_arrays(_i64(a), _i64(b))
    ab = a * b  # |ab| <= 2^62: fits int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    # C integer division truncates toward zero
    q = np.where(num >= 0, num >> 31, -((-num) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, q)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero (0 <= exponent <= 31)."""
    x = _i64(x)
    e = _i64(exponent)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for int32."""
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    out = wrap_int32(x << exponent)
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (TFLM default, two roundings): x * m * 2^shift."""
    x, m, s = np.broadcast_arrays(_i64(x), _i64(multiplier), _i64(shift))
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(wrap_int32(x << left), m), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, left_shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (left_shift <= 0)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -_i64(left_shift))


def multiply_by_quantized_multiplier_greater_than_one(x, multiplier, left_shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0)."""
    return saturating_rounding_doubling_high_mul(wrap_int32(_i64(x) << _i64(left_shift)), multiplier)


# -- gemmlowp fixed-point exp and reciprocal (int8 softmax) ---------------------------------
# A FixedPoint<int32, I> value is a raw int32 with I integer bits and 31-I fractional bits.
# Products of two fixed-point values are SaturatingRoundingDoublingHighMul of the raws.

def _fx_mul(a, b) -> np.ndarray:
    return saturating_rounding_doubling_high_mul(a, b)


def _rescale(raw, src_bits: int, dst_bits: int) -> np.ndarray:
    """gemmlowp Rescale<dst>(FixedPoint<src>)."""
    return saturating_rounding_multiply_by_pot(raw, src_bits - dst_bits)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """exp(a) for a FixedPoint<0> in [-1/4, 0); result FixedPoint<0>."""
    a = _i64(a)
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = a + (1 << 28)  # a + 1/8
    x2 = _fx_mul(x, x)
    x3 = _fx_mul(x2, x)
    x4 = _fx_mul(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(_fx_mul(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return constant_term + _fx_mul(constant_term, x + poly)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """gemmlowp exp_on_negative_values: FixedPoint<integer_bits> a <= 0 -> FixedPoint<0> exp(a)."""
    a = _i64(a)
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        _rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, _fx_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _rounding_half_sum(a, b) -> np.ndarray:
    s = _i64(a) + _i64(b)
    num = s + np.where(s >= 0, 1, -1)
    return np.where(num >= 0, num // 2, -((-num) // 2))


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: FixedPoint<0> a in [0,1) -> 1/(1+a) as FixedPoint<0>."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    one_f2 = 1 << 29
    x = 1515870810 + _fx_mul(half_denominator, -1010580540)  # 48/17 - 32/17 * d   (F2)
    for _ in range(3):
        hdx = _fx_mul(half_denominator, x)  # F2
        one_minus = one_f2 - hdx  # F2
        x = x + _rescale(_fx_mul(x, one_minus), 4, 2)
    # ExactMulByPot<-1> (F2 -> F1, raw unchanged), then Rescale<0> from F1
    return _rescale(x, 1, 0)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1: FixedPoint<0> a in [0,1) -> (1-a)/(1+a), F0."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    one_f2 = 1 << 29
    x = 1515870810 + _fx_mul(half_denominator, -1010580540)
    for _ in range(3):
        one_minus = one_f2 - _fx_mul(half_denominator, x)
        x = x + _rescale(_fx_mul(x, one_minus), 4, 2)
    return _rescale(x - one_f2, 2, 0)


def logistic_fixed(a, integer_bits: int) -> np.ndarray:
    """gemmlowp logistic: FixedPoint<integer_bits> a -> 1/(1+exp(-a)) as a FixedPoint<0> raw."""
    a = _i64(a)
    pos = a > 0
    abs_in = np.where(pos, a, wrap_int32(-a))
    r_pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap_int32(-abs_in), integer_bits))
    r_neg = wrap_int32(INT32_MAX - r_pos)
    return np.where(a == 0, 1 << 30, np.where(pos, r_pos, r_neg))


def tanh_fixed(a, integer_bits: int) -> np.ndarray:
    """gemmlowp tanh: FixedPoint<integer_bits> a -> tanh(a) as a FixedPoint<0> raw (exp of 2a, one more
    integer bit, through (1 - x) / (1 + x))."""
    a = _i64(a)
    neg = a < 0
    n = np.where(neg, a, wrap_int32(-a))
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(neg, wrap_int32(-t), t))


def count_leading_zeros_u32(x) -> np.ndarray:
    """Leading zero bits of x taken as uint32 (32 for 0)."""
    x = _i64(x) & 0xFFFFFFFF
    _, e = np.frexp(x.astype(np.float64))  # exact: x = m * 2^e with m in [0.5, 1)
    return np.where(x == 0, 32, 32 - e.astype(np.int64))


def get_reciprocal(x, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (1/x as FixedPoint<0> raw, num_bits_over_unit) for FixedPoint<x_integer_digits> x > 0."""
    x = _i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def inv_sqrt_quantized_multiplier_exp(x, reverse_shift: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetInvSqrtQuantizedMultiplierExp: (multiplier, shift) with 1/sqrt(x) ~ multiplier * 2^shift
    (Newton-Raphson in FixedPoint<3>), for int32 x >= 0 (0 and 1 give (INT32_MAX, 0))."""
    x = _i64(x)
    small = x <= 1
    v = np.where(small, 2, x)
    shift = np.full(v.shape, 11, dtype=np.int64)
    while np.any(v >= (1 << 29)):
        big = v >= (1 << 29)
        v = np.where(big, v // 4, v)
        shift = shift + big
    pairs = (count_leading_zeros_u32(v) - 1) // 2 - 1
    shift = shift - pairs
    v = v << (2 * pairs)
    half_input = rounding_divide_by_pot(v >> 1, 1)
    half_three = (1 << 28) + (1 << 27)
    r = np.full(v.shape, 1 << 28, dtype=np.int64)  # F3 one
    for _ in range(5):
        x3 = saturating_rounding_multiply_by_pot(_fx_mul(_fx_mul(r, r), r), 6)
        r = saturating_rounding_multiply_by_pot(wrap_int32(_fx_mul(half_three, r) - _fx_mul(half_input, x3)), 3)
    r = _fx_mul(r, 1518500250)  # sqrt(2) / 2 in F0
    r = np.where(shift < 0, wrap_int32(r << np.maximum(-shift, 0)), r)
    shift = np.maximum(shift, 0) * reverse_shift
    return np.where(small, INT32_MAX, r), np.where(small, 0, shift)


# -- softmax parameters --------------------------------------------------------------------

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def preprocess_softmax_scaling(beta: float, input_scale: float, input_integer_bits: int) -> tuple[int, int]:
    """PreprocessSoftmaxScaling -> (input_multiplier, input_left_shift)."""
    real = min(float(beta) * float(input_scale) * (1 << (31 - input_integer_bits)), float((1 << 31) - 1))
    return quantize_multiplier_greater_than_one(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """CalculateInputRadius."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def softmax_int8(x: np.ndarray, input_multiplier: int, input_left_shift: int, diff_min: int) -> np.ndarray:
    """TFLite reference int8 -> int8 softmax along the last axis (output scale 1/256, zp -128)."""
    x = np.asarray(x).astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    rescaled = multiply_by_quantized_multiplier_greater_than_one(diff, input_multiplier, input_left_shift)
    exp = exp_on_negative_values(rescaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS)  # F0
    exp_acc = rounding_divide_by_pot(exp, SOFTMAX_ACCUMULATION_INTEGER_BITS)  # Rescale<12>
    sum_of_exps = np.where(valid, exp_acc, 0).sum(axis=-1, keepdims=True)
    sum_of_exps = wrap_int32(sum_of_exps)
    shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    unsat = rounding_divide_by_pot(_fx_mul(shifted_scale, exp), num_bits_over_unit + 31 - 8)
    out = np.clip(unsat - 128, -128, 127)
    return np.where(valid, out, -128).astype(np.int8)


# -- quantize / dequantize -------------------------------------------------------------------

def affine_quantize(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """TFLite AffineQuantize: round(x / scale) (float32 division, half away from zero) + zp, clamped."""
    x = np.asarray(x, dtype=np.float32)
    v = x / np.float32(scale)
    r = round_half_away(v)
    info = np.iinfo(dtype)
    q = np.clip(r.astype(np.float64), -2.0 ** 40, 2.0 ** 40).astype(np.int64) + int(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite Dequantize: float(double(scale) * (q - zp))."""
    return (float(scale) * (np.asarray(q, dtype=np.int64) - int(zero_point)).astype(np.float64)).astype(np.float32)


# -- TFLM's int16 sigmoid and tanh (reference_integer_ops::Logistic / Tanh, the integer LSTM) ------

def sigmoid_table_u16() -> np.ndarray:
    """TFLite's 256-entry ``sigmoid_table_uint16`` (shared by its int16 sigmoid and tanh: tanh(x) =
    2 sigmoid(2x) - 1): 65536 sigmoid(i / 24) raised by half the chord error at the middle of the
    interval to the next knot (the linear interpolation between knots then errs both ways equally),
    rounded; the last knot is 65535 (the saturation value)."""
    f = lambda t: 65536.0 / (1.0 + np.exp(-t / 24.0))  # noqa: E731
    i = np.arange(256, dtype=np.float64)
    sag = f(i + 0.5) - (f(i) + f(i + 1)) / 2  # sigmoid above its chord (concave for i > 0)
    t = np.round(f(i) + sag / 2).astype(np.int64)
    t[255] = 65535
    return t


_SIG = sigmoid_table_u16()


def sigmoid_s16(x, input_multiplier: int = 0, input_left_shift: int = 0) -> np.ndarray:
    """reference_integer_ops::Logistic on int16: input Q3.12 (multiplier 0, shift 0 as the LSTM
    calls it) -> output Q0.15 in [0, 32767]."""
    m, sh = int(input_multiplier), int(input_left_shift)
    if m == 0:
        m, sh = 3 << sh, 0
    rnd = (1 << (sh - 1)) if sh > 0 else 0
    v = (_i64(x) * m + rnd) >> sh
    a = np.abs(v)
    uh = a >> 9
    big = uh >= 255
    uhc = np.minimum(uh, 254)
    ua, ub = _SIG[uhc], _SIG[uhc + 1]
    r = np.where(big, 0x7FFF << 10, (ua << 9) + (a & 0x1FF) * (ub - ua))
    r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1)
    return (r >> 10).astype(np.int64)


def tanh_s16(x, input_multiplier: int = 0, input_left_shift: int = 0) -> np.ndarray:
    """reference_integer_ops::Tanh on int16 -> Q0.15 (with multiplier 0 and shift 0 the input is
    Q3.12; the LSTM's cell tanh gets its arguments from :func:`lstm_tanh_params`)."""
    m, sh = int(input_multiplier), int(input_left_shift)
    if m == 0:
        m, sh = 3 << sh, 0
    rnd = (1 << (sh - 1)) if sh > 0 else 0
    v = (_i64(x) * m + rnd) >> sh
    a = np.abs(v)
    uh = a >> 8
    big = uh >= 255
    uhc = np.minimum(uh, 254)
    ua, ub = _SIG[uhc], _SIG[uhc + 1]
    r = np.where(big, 0xFFFF << 8, (ua << 8) + (a & 0xFF) * (ub - ua))
    r = np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1)
    return (r >> 8).astype(np.int64)


def lstm_tanh_params(cell_scale_log2: int) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) of TFLM's ``lstm_internal::Tanh`` for an int16 input
    of scale 2^cell_scale_log2."""
    shift = 15 + int(cell_scale_log2) - 3
    if shift < 0:
        return 3, -shift
    return 0, shift
