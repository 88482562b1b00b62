/*
 * ec_kernels_reduce.c - reductions along axes (see ec_kernels_reduce.h).
 *
 * int8 follows TensorFlow Lite Micro's reference kernels operation for operation: MEAN
 * (reference_ops::QuantizedMeanOrSum), ARG_MAX (reference_ops::ArgMinMax with Greater),
 * L2_NORMALIZATION (reference_integer_ops::L2Normalization with GetInvSqrtQuantizedMultiplierExp).
 */
#include "ec_kernels_reduce.h"

#include <math.h>
#include <string.h>

/* The kept-axes odometer: the input offset of the next output. */
typedef struct {
    int32_t idx[EC_REDUCE_GROUPS];
    int32_t off;
} odometer_t;

static void odometer_next(odometer_t *o, const int32_t *dims, const int32_t *strides)
{
    for (int32_t k = EC_REDUCE_GROUPS - 1; k >= 0; k--) {
        o->idx[k]++;
        o->off += strides[k];
        if (o->idx[k] < dims[k])
            return;
        o->off -= o->idx[k] * strides[k];
        o->idx[k] = 0;
    }
}

static int32_t outputs_of(const ec_reduce_params_t *p)
{
    return p->kept_dims[0] * p->kept_dims[1] * p->kept_dims[2];
}

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ---- mean ---------------------------------------------------------------------------------- */

static int32_t sum_s8(const ec_reduce_params_t *p, const int8_t *x)
{
    const int32_t n2 = p->red_dims[2], s2 = p->red_strides[2];
    int32_t acc = 0;
    for (int32_t i0 = 0; i0 < p->red_dims[0]; i0++)
        for (int32_t i1 = 0; i1 < p->red_dims[1]; i1++) {
            const int8_t *r = x + i0 * p->red_strides[0] + i1 * p->red_strides[1];
            for (int32_t i2 = 0; i2 < n2; i2++, r += s2)
                acc += *r;
        }
    return acc;
}

void ec_mean_s8(const ec_reduce_params_t *p, const int8_t *input, int8_t *output)
{
    odometer_t o = {{0, 0, 0}, 0};
    const int32_t zp_sum = (int32_t)((int64_t)p->input_offset * p->count);
    for (int32_t i = 0, n = outputs_of(p); i < n; i++) {
        const int32_t shifted = (int32_t)((uint32_t)sum_s8(p, input + o.off) + (uint32_t)zp_sum);
        const int32_t v = ec_multiply_by_quantized_multiplier(shifted, p->multiplier, p->shift) + p->output_offset;
        output[i] = (int8_t)clamp_i32(v, p->act_min, p->act_max);
        odometer_next(&o, p->kept_dims, p->kept_strides);
    }
}

void ec_mean_f32(const ec_reduce_params_t *p, const float *input, float *output)
{
    odometer_t o = {{0, 0, 0}, 0};
    for (int32_t i = 0, n = outputs_of(p); i < n; i++) {
        float acc = 0.0f;
        for (int32_t i0 = 0; i0 < p->red_dims[0]; i0++)
            for (int32_t i1 = 0; i1 < p->red_dims[1]; i1++) {
                const float *r = input + o.off + i0 * p->red_strides[0] + i1 * p->red_strides[1];
                for (int32_t i2 = 0; i2 < p->red_dims[2]; i2++)
                    acc += r[i2 * p->red_strides[2]];
            }
        output[i] = acc / (float)p->count;
        odometer_next(&o, p->kept_dims, p->kept_strides);
    }
}

/* ---- argmax -------------------------------------------------------------------------------- */

void ec_argmax_s8(const ec_reduce_params_t *p, const int8_t *input, int32_t *output)
{
    odometer_t o = {{0, 0, 0}, 0};
    const int32_t n2 = p->red_dims[2], s2 = p->red_strides[2];
    for (int32_t i = 0, n = outputs_of(p); i < n; i++) {
        const int8_t *x = input + o.off;
        int32_t best = x[0], at = 0;
        for (int32_t k = 1; k < n2; k++) {
            if (x[k * s2] > best) {
                best = x[k * s2];
                at = k;
            }
        }
        output[i] = at;
        odometer_next(&o, p->kept_dims, p->kept_strides);
    }
}

void ec_argmax_f32(const ec_reduce_params_t *p, const float *input, int32_t *output)
{
    odometer_t o = {{0, 0, 0}, 0};
    const int32_t n2 = p->red_dims[2], s2 = p->red_strides[2];
    for (int32_t i = 0, n = outputs_of(p); i < n; i++) {
        const float *x = input + o.off;
        float best = x[0];
        int32_t at = 0;
        for (int32_t k = 1; k < n2; k++) {
            if (x[k * s2] > best) {
                best = x[k * s2];
                at = k;
            }
        }
        output[i] = at;
        odometer_next(&o, p->kept_dims, p->kept_strides);
    }
}

/* ---- softmax over a strided axis ----------------------------------------------------------- */

void ec_softmax_axis_s8(const ec_softmax_params_t *p, int32_t inner, const int8_t *input, int8_t *output,
                        int8_t *work)
{
    ec_softmax_params_t one = *p;
    one.rows = 1;
    const int32_t outer = p->rows / inner, depth = p->depth;
    for (int32_t o = 0; o < outer; o++)
        for (int32_t i = 0; i < inner; i++) {
            const int32_t base = o * depth * inner + i;
            for (int32_t k = 0; k < depth; k++)
                work[k] = input[base + k * inner];
            ec_softmax_s8(&one, work, work);
            for (int32_t k = 0; k < depth; k++)
                output[base + k * inner] = work[k];
        }
}

void ec_softmax_axis_f32(const ec_softmax_params_t *p, int32_t inner, const float *input, float *output,
                         float *work)
{
    ec_softmax_params_t one = *p;
    one.rows = 1;
    const int32_t outer = p->rows / inner, depth = p->depth;
    for (int32_t o = 0; o < outer; o++)
        for (int32_t i = 0; i < inner; i++) {
            const int32_t base = o * depth * inner + i;
            for (int32_t k = 0; k < depth; k++)
                work[k] = input[base + k * inner];
            ec_softmax_f32(&one, work, work);
            for (int32_t k = 0; k < depth; k++)
                output[base + k * inner] = work[k];
        }
}

/* ---- L2 normalization ---------------------------------------------------------------------- */

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for a left shift (exponent > 0). */
static int32_t sat_shift_left(int32_t x, int exponent)
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold)
        return INT32_MAX;
    if (x < -threshold)
        return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* TFLite GetInvSqrtQuantizedMultiplierExp(x, kReverseShift = -1): 1/sqrt(x) as multiplier * 2^shift,
 * Newton-Raphson in FixedPoint<int32, 3>. */
static void inv_sqrt_multiplier(int32_t x, int32_t *multiplier, int32_t *shift)
{
    if (x <= 1) {
        *multiplier = INT32_MAX;
        *shift = 0;
        return;
    }
    int32_t s = 11;
    while (x >= (1 << 29)) {
        x /= 4;
        s++;
    }
    int clz = 0;
    for (uint32_t v = (uint32_t)x; !(v & 0x80000000u); v <<= 1)
        clz++;
    const int pairs = (clz - 1) / 2 - 1;
    s -= pairs;
    x <<= 2 * pairs;
    const int32_t half_input = ec_rounding_divide_by_pot(x >> 1, 1);
    const int32_t half_three = (1 << 28) + (1 << 27);
    int32_t r = 1 << 28; /* 1.0 in FixedPoint<3> */
    for (int i = 0; i < 5; i++) {
        const int32_t r3 = sat_shift_left(
            ec_sat_rounding_doubling_high_mul(ec_sat_rounding_doubling_high_mul(r, r), r), 6);
        const int32_t d = (int32_t)((uint32_t)ec_sat_rounding_doubling_high_mul(half_three, r) -
                                    (uint32_t)ec_sat_rounding_doubling_high_mul(half_input, r3));
        r = sat_shift_left(d, 3);
    }
    r = ec_sat_rounding_doubling_high_mul(r, 1518500250); /* sqrt(2) / 2 in FixedPoint<0> */
    if (s < 0) {
        r = (int32_t)((uint32_t)r << -s);
        s = 0;
    }
    *multiplier = r;
    *shift = -s;
}

void ec_l2_normalization_s8(int32_t rows, int32_t depth, int32_t input_offset, const int8_t *input,
                            int8_t *output)
{
    for (int32_t r = 0; r < rows; r++) {
        const int8_t *x = input + r * depth;
        int8_t *y = output + r * depth;
        int32_t acc = 0;
        for (int32_t c = 0; c < depth; c++) {
            const int32_t d = x[c] + input_offset;
            acc += d * d;
        }
        int32_t m, s;
        inv_sqrt_multiplier(acc, &m, &s);
        for (int32_t c = 0; c < depth; c++) {
            const int32_t v = ec_multiply_by_quantized_multiplier(x[c] + input_offset, m, s + 7);
            y[c] = (int8_t)clamp_i32(v, -128, 127);
        }
    }
}

void ec_l2_normalization_f32(int32_t rows, int32_t depth, const float *input, float *output)
{
    for (int32_t r = 0; r < rows; r++) {
        const float *x = input + r * depth;
        float *y = output + r * depth;
        float sq = 0.0f;
        for (int32_t c = 0; c < depth; c++)
            sq += x[c] * x[c];
        float norm = sqrtf(sq);
        if (norm < 1e-6f)
            norm = 1e-6f;
        for (int32_t c = 0; c < depth; c++)
            y[c] = x[c] / norm;
    }
}
