/*
 * ec_softmax.c - reference softmax kernels (int8 with gemmlowp's fixed point, float32).
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels operation for operation (same
 * integer arithmetic, same rounding), so a model imported from an int8 .tflite file gives
 * bit-identical outputs; the float32 kernels accumulate in the same order as TFLM's float kernels.
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_reference.h"

#include <math.h>

/*
 * gemmlowp fixed point, as TFLite's int8 softmax uses it.  A FixedPoint<I>
 * value is an int32 with I integer bits; the product of two is
 * ec_sat_rounding_doubling_high_mul of the raw values.
 */
#define FX_MUL(a, b) ec_sat_rounding_doubling_high_mul((a), (b))

/* SaturatingRoundingMultiplyByPOT: x * 2^exponent, saturating for a left shift. */
static int32_t sat_mul_by_pot(int32_t x, int exponent)
{
    if (exponent < 0)
        return ec_rounding_divide_by_pot(x, -exponent);
    if (exponent == 0)
        return x;
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold)
        return INT32_MAX;
    if (x < -threshold)
        return INT32_MIN;
    return ec_shift_left(x, exponent);
}

/* exp(a) for a FixedPoint<0> in [-1/4, 0). */
static int32_t exp_on_interval_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668; /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28); /* a + 1/8 */
    const int32_t x2 = FX_MUL(x, x);
    const int32_t x3 = FX_MUL(x2, x);
    const int32_t x4 = FX_MUL(x2, x2);
    const int32_t x4_over_4 = sat_mul_by_pot(x4, -2);
    const int32_t poly = sat_mul_by_pot(FX_MUL(x4_over_4 + x3, constant_1_over_3) + x2, -1);
    return constant_term + FX_MUL(constant_term, x + poly);
}

/* exp(a) for a FixedPoint<5> a <= 0; result FixedPoint<0>. */
static int32_t exp_on_negative_values_5(int32_t a)
{
    enum { integer_bits = 5, frac_bits = 31 - integer_bits };
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << (frac_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    int32_t result = exp_on_interval_quarter(sat_mul_by_pot(a_mod_quarter_minus_one_quarter, integer_bits));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    for (int exponent = -2; exponent <= 4; exponent++) {
        if (remainder & (1 << (frac_bits + exponent)))
            result = FX_MUL(result, barrel[exponent + 2]);
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a FixedPoint<0> a in [0, 1); result FixedPoint<0>. */
static int32_t one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + FX_MUL(half_denominator, -1010580540); /* 48/17 - 32/17 d, FixedPoint<2> */
    for (int i = 0; i < 3; i++) {
        const int32_t one_minus = (1 << 29) - FX_MUL(half_denominator, x);
        x = x + sat_mul_by_pot(FX_MUL(x, one_minus), 2);
    }
    return sat_mul_by_pot(x, 1);
}

static int count_leading_zeros(uint32_t x)
{
    int n = 0;
    if (x == 0)
        return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
}

void ec_softmax_s8(const ec_softmax_params_t *p, const int8_t *input, int8_t *output)
{
    enum { accumulation_bits = 12 };
    for (int32_t r = 0; r < p->rows; r++) {
        const int8_t *x = input + r * p->depth;
        int8_t *y = output + r * p->depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < p->depth; c++)
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;

        int32_t sum_of_exps = 0; /* FixedPoint<12> */
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = FX_MUL(ec_shift_left(diff, p->input_left_shift), p->input_multiplier);
                sum_of_exps += ec_rounding_divide_by_pot(exp_on_negative_values_5(scaled), accumulation_bits);
            }
        }

        /* 1 / sum_of_exps, as TFLite's GetReciprocal */
        const int headroom_plus_one = count_leading_zeros((uint32_t)sum_of_exps);
        const int num_bits_over_unit = accumulation_bits - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);

        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = FX_MUL(ec_shift_left(diff, p->input_left_shift), p->input_multiplier);
                const int32_t exp_in_0 = exp_on_negative_values_5(scaled);
                const int32_t unsat = ec_rounding_divide_by_pot(FX_MUL(shifted_scale, exp_in_0),
                                                                num_bits_over_unit + 31 - 8);
                y[c] = (int8_t)ec_clip_i32(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

void ec_softmax_f32(const ec_softmax_params_t *p, const float *input, float *output)
{
    for (int32_t r = 0; r < p->rows; r++) {
        const float *x = input + r * p->depth;
        float *y = output + r * p->depth;
        float max_in_row = x[0];
        for (int32_t c = 1; c < p->depth; c++)
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        float sum = 0.0f;
        for (int32_t c = 0; c < p->depth; c++) {
            const float e = expf((x[c] - max_in_row) * p->beta);
            y[c] = e;
            sum += e;
        }
        for (int32_t c = 0; c < p->depth; c++)
            y[c] = y[c] / sum;
    }
}
