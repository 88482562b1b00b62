"""TFLite integer primitives: against exact big-integer / rational definitions and float math.

(Agreement with the PyPI tflite-micro build itself is checked end to end in test_tflite.py:
every layer of the four MLPerf Tiny int8 models is bit-exact.)
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecomp import numerics as nx

I32 = st.integers(-(1 << 31), (1 << 31) - 1)


def _round_half_away(f: Fraction) -> int:
    n = math.floor(abs(f) + Fraction(1, 2))
    return n if f >= 0 else -n


def test_quantize_multiplier_known_values():
    assert nx.quantize_multiplier(0.0) == (0, 0)
    assert nx.quantize_multiplier(0.5) == (1 << 30, 0)
    assert nx.quantize_multiplier(1.0) == (1 << 30, 1)
    assert nx.quantize_multiplier(0.75) == (3 << 29, 0)
    assert nx.quantize_multiplier(2.0 ** -10) == (1 << 30, -9)
    # q * 2^31 rounds up to 2^31: the multiplier is halved and the shift carried
    assert nx.quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)
    # below 2^-32 every bit would be shifted out: flushed to zero
    assert nx.quantize_multiplier(2.0 ** -33) == (0, 0)
    assert nx.quantize_multiplier(2.0 ** -31) == (1 << 30, -30)


@given(st.floats(min_value=2.0 ** -30, max_value=2.0 ** 20, allow_nan=False))
@settings(max_examples=300, deadline=None)
def test_quantize_multiplier_is_nearest_q31(d):
    m, shift = nx.quantize_multiplier(d)
    assert (1 << 30) <= m < (1 << 31)
    q, e = math.frexp(d)
    assert m == _round_half_away(Fraction(q) * (1 << 31)) or (m, shift) == (1 << 30, e + 1)
    assert abs(Fraction(m) * Fraction(2) ** (shift - 31) - Fraction(d)) <= Fraction(d) * Fraction(1, 1 << 31)


def test_quantize_multiplier_range_checks():
    assert nx.quantize_multiplier_smaller_than_one_exp(0.3)[1] <= 0
    assert nx.quantize_multiplier_greater_than_one(3.5)[1] >= 0
    with pytest.raises(ValueError):
        nx.quantize_multiplier_smaller_than_one_exp(1.5)
    with pytest.raises(ValueError):
        nx.quantize_multiplier_greater_than_one(0.5)


@given(I32, I32)
@settings(max_examples=500, deadline=None)
def test_saturating_rounding_doubling_high_mul(a, b):
    want = (1 << 31) - 1 if a == b == -(1 << 31) else (a * b + (1 << 30)) // (1 << 31)  # round half up
    assert int(nx.saturating_rounding_doubling_high_mul(a, b)) == want


def test_saturating_rounding_doubling_high_mul_edges_vectorized():
    a = np.array([-(1 << 31), -(1 << 31), 1 << 30, -(1 << 30), 3, -3, (1 << 31) - 1], np.int64)
    b = np.array([-(1 << 31), (1 << 31) - 1, 1, 1, 1 << 30, 1 << 30, (1 << 31) - 1], np.int64)
    got = nx.saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [(1 << 31) - 1, -((1 << 31) - 1), 1, 0, 2, -1, (1 << 31) - 2]


@given(I32, st.integers(0, 31))
@settings(max_examples=500, deadline=None)
def test_rounding_divide_by_pot_rounds_half_away_from_zero(x, e):
    assert int(nx.rounding_divide_by_pot(x, e)) == _round_half_away(Fraction(x, 1 << e))


def test_rounding_divide_by_pot_halves():
    x = np.array([5, -5, 3, -3, 1, -1, 2, -2])
    assert nx.rounding_divide_by_pot(x, 1).tolist() == [3, -3, 2, -2, 1, -1, 1, -1]


@given(st.integers(-(1 << 24), 1 << 24), st.floats(min_value=1e-6, max_value=8.0))
@settings(max_examples=500, deadline=None)
def test_multiply_by_quantized_multiplier_is_the_two_rounding_variant(x, real):
    m, shift = nx.quantize_multiplier(real)
    left, right = max(shift, 0), max(-shift, 0)
    xs = x * (1 << left)
    if not -(1 << 31) <= xs < (1 << 31):
        return
    high = (xs * m + (1 << 30)) // (1 << 31)  # SaturatingRoundingDoublingHighMul
    want = _round_half_away(Fraction(high, 1 << right))  # then RoundingDivideByPOT
    assert int(nx.multiply_by_quantized_multiplier(x, m, shift)) == want
    # and it approximates x * real to within a rounding step of each stage
    assert abs(want - x * real) <= 1 + abs(x * real) * 1e-6


def test_double_rounding_differs_from_single_rounding_somewhere():
    """TFLM's default MultiplyByQuantizedMultiplier rounds twice; make sure we do too."""
    m, shift = nx.quantize_multiplier(0.3)
    x = np.arange(-200000, 200000, dtype=np.int64)
    ours = nx.multiply_by_quantized_multiplier(x, m, shift)
    single = np.array([_round_half_away(Fraction(int(v) * m, 1 << (31 - shift))) for v in x[::97]])
    assert np.abs(ours[::97] - single).max() <= 1
    double = np.array([_round_half_away(Fraction((int(v) * m + (1 << 30)) // (1 << 31), 1 << -shift)) for v in x[::97]])
    np.testing.assert_array_equal(ours[::97], double)


def test_exp_on_negative_values_matches_exp():
    a = -np.arange(0, 32 << 26, (1 << 26) // 997, dtype=np.int64)  # FixedPoint<5>: [-32, 0]
    got = nx.exp_on_negative_values(a, 5) / 2.0 ** 31
    assert np.abs(got - np.exp(a / 2.0 ** 26)).max() < 5e-7
    assert int(nx.exp_on_negative_values(0, 5)) == (1 << 31) - 1  # exp(0) saturates to one


def test_one_over_one_plus_x_and_reciprocal():
    x = np.arange(0, (1 << 31) - 1, (1 << 31) // 10007, dtype=np.int64)
    got = nx.one_over_one_plus_x_for_x_in_0_1(x) / 2.0 ** 31
    assert np.abs(got - 1 / (1 + x / 2.0 ** 31)).max() < 1e-8
    for v in [1 << 19, 3 << 20, 12345678, 1 << 12]:
        raw, bits = nx.get_reciprocal(v, 12)  # FixedPoint<12> value v / 2^19
        assert abs(raw / 2.0 ** 31 * 2.0 ** -int(bits) - 2.0 ** 19 / v) < 1e-7 * 2.0 ** 19 / v


def test_count_leading_zeros():
    vals = [0, 1, 2, 3, 255, 1 << 20, (1 << 31) - 1, -1, -(1 << 31)]
    want = [32 - (v & 0xFFFFFFFF).bit_length() for v in vals]
    assert nx.count_leading_zeros_u32(vals).tolist() == want


@pytest.mark.parametrize("beta,scale", [(1.0, 0.1), (1.0, 0.02), (0.5, 0.3), (1.0, 1.0)])
def test_softmax_int8_close_to_float_softmax(beta, scale):
    m, left = nx.preprocess_softmax_scaling(beta, scale, 5)
    diff_min = -nx.calculate_input_radius(5, left)
    x = np.random.default_rng(0).integers(-128, 128, (300, 10))
    got = nx.softmax_int8(x, m, left, diff_min).astype(np.int32)
    z = np.exp(beta * scale * (x - x.max(1, keepdims=True)))
    want = np.clip(np.round(z / z.sum(1, keepdims=True) * 256) - 128, -128, 127)
    assert np.abs(got - want).max() <= 1
    assert len(np.unique(got)) > 15  # not all saturated


def test_affine_quantize_rounds_half_away_and_saturates():
    x = np.array([0.5, -0.5, 1.5, -1.5, 0.49999997, 1e9, -1e9, 2.5], np.float32)
    assert nx.affine_quantize(x, 1.0, 0).tolist() == [1, -1, 2, -2, 0, 127, -128, 3]
    assert nx.affine_quantize(np.float32([0.3]), 0.1, -128).tolist() == [-125]
    q = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(nx.affine_quantize(nx.dequantize(q, 0.037, 5), 0.037, 5), q)
