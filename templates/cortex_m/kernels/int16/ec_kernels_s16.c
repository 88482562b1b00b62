/*
 * ec_kernels_s16.c - int16 activation / int8 weight kernels (see ec_kernels_s16.h).
 *
 * Written for edgecomp; the loop structure mirrors the int8 reference kernels (same clipped
 * windows, same row-at-a-time output).
 * Right shifts of negative int64 values are arithmetic (floor), as GCC and
 * every compiler for Cortex-M define them.
 */
#include "ec_kernels_s16.h"
#include "ec_reference.h"

#include <string.h>

#define EC_S16_ACC_LIMIT ((int64_t)1 << 47) /* beyond it every requantized value saturates int16 */

static int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static int32_t sat_i32(int64_t v)
{
    return (int32_t)clamp_i64(v, INT32_MIN, INT32_MAX);
}

/* floor((hi * 2^16 + lo) * m + add) / 2^n) for n >= 16, 0 <= lo < 2^16, without the 64 x 32 bit
 * product: the low part and `add` are summed first, so the result is exact. */
static int64_t split_floor(int64_t hi, int64_t lo, int32_t m, int64_t add, int32_t n)
{
    return (hi * m + ((lo * m + add) >> 16)) >> (n - 16);
}

int32_t ec_requantize_acc_s16(int64_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t n = 31 - shift; /* acc * multiplier is shifted right by n */
    if (n > 62)
        return 0;
    if (n >= 16) {
        acc = clamp_i64(acc, -EC_S16_ACC_LIMIT, EC_S16_ACC_LIMIT);
        const int64_t hi = acc >> 16;
        const int64_t lo = acc & 0xFFFF;
        /* round half to even: floor((X + 2^(n-1) - 1 + (bit n of X)) / 2^n), X = acc * multiplier */
        const int64_t odd = split_floor(hi, lo, multiplier, 0, n) & 1;
        return sat_i32(split_floor(hi, lo, multiplier, ((int64_t)1 << (n - 1)) - 1 + odd, n));
    }
    acc = clamp_i64(acc, INT32_MIN, INT32_MAX); /* |acc| >= 2 already saturates here */
    const int64_t x = acc * multiplier;
    return sat_i32((x + ((int64_t)1 << (n - 1)) - 1 + ((x >> n) & 1)) >> n);
}

int32_t ec_shift_acc_s16(int64_t acc, int32_t shift)
{
    const int32_t k = 1 - shift; /* right shift */
    if (k > 62)
        return 0;
    if (k > 0) {
        acc = clamp_i64(acc, -EC_S16_ACC_LIMIT, EC_S16_ACC_LIMIT);
        return sat_i32((acc + ((int64_t)1 << (k - 1)) - 1 + ((acc >> k) & 1)) >> k); /* half to even */
    }
    acc = clamp_i64(acc, INT32_MIN, INT32_MAX);
    return sat_i32(acc * ((int64_t)1 << -k));
}

static int16_t out_s16(const int32_t *multiplier, const int8_t *shift, int64_t acc, int32_t c, int32_t lo,
                       int32_t hi)
{
    int32_t v = multiplier != NULL ? ec_requantize_acc_s16(acc, multiplier[c], shift[c])
                                   : ec_shift_acc_s16(acc, shift[c]);
    return (int16_t)(v < lo ? lo : (v > hi ? hi : v));
}

#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
#include <arm_acle.h>

/* Cores with the DSP extension (Cortex-M4/M7): 4 products per step with two SMLALD (dual
 * 16 x 16 multiply, 64-bit accumulate).  SXTB16 sign-extends weights 0 and 2 (and, of the word
 * rotated by 8, weights 1 and 3); the inputs are paired to match.  Exact integer sums: the
 * same result as the plain loop below, in another order. */
static EC_NOINLINE int64_t dot_s16(const int16_t *x, const int8_t *w, int32_t n, int64_t acc)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t xa, xb, wv;
        memcpy(&xa, x + i, sizeof xa);     /* x0 (low half), x1 (high half) */
        memcpy(&xb, x + i + 2, sizeof xb); /* x2, x3 */
        memcpy(&wv, w + i, sizeof wv);     /* w0 .. w3 */
        const int16x2_t w02 = __sxtb16((int8x4_t)wv);
        const int16x2_t w13 = __sxtb16((int8x4_t)((wv >> 8) | (wv << 24)));
        const int16x2_t x02 = (int16x2_t)((xa & 0xFFFFu) | (xb << 16));
        const int16x2_t x13 = (int16x2_t)((xa >> 16) | (xb & 0xFFFF0000u));
        acc = __smlald(x02, w02, acc);
        acc = __smlald(x13, w13, acc);
    }
    for (; i < n; i++)
        acc += (int32_t)x[i] * (int32_t)w[i];
    return acc;
}
#else
static EC_NOINLINE int64_t dot_s16(const int16_t *x, const int8_t *w, int32_t n, int64_t acc)
{
    for (int32_t i = 0; i < n; i++)
        acc += (int32_t)x[i] * (int32_t)w[i];
    return acc;
}
#endif

void ec_conv2d_s16(const ec_conv_params_t *p, const int16_t *input, const int8_t *filter,
                   const int32_t *bias, int16_t *output, int16_t *row)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t in_c = p->in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *in_b = input + b * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int16_t *dst = row != NULL ? row : output + out_row;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int8_t *w = filter + oc * p->kernel_h * p->kernel_w * in_c;
                    int64_t acc = bias != NULL ? bias[oc] : 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        const int32_t kx_step = p->dilation_w == 1 ? kx1 - kx0 : 1;
                        for (int32_t kx = kx0; kx < kx1; kx += kx_step) {
                            const int32_t ix = in_x0 + kx * p->dilation_w;
                            acc = dot_s16(in_b + (iy * p->in_w + ix) * in_c, w + (ky * p->kernel_w + kx) * in_c,
                                          kx_step * in_c, acc);
                        }
                    }
                    dst[ox * p->out_c + oc] = out_s16(p->multiplier, p->shift, acc, oc, p->act_min, p->act_max);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(int16_t));
        }
    }
}

static EC_NOINLINE int64_t depthwise_acc_s16(const ec_conv_params_t *p, const int16_t *in, int32_t origin,
                                                 const int8_t *w, int32_t ky0, int32_t ky1, int32_t kx0,
                                                 int32_t kx1, int64_t acc)
{
    const int32_t x_step = p->dilation_w * p->in_c;
    for (int32_t ky = ky0; ky < ky1; ky++) {
        const int16_t *xr = in + (origin + ky * p->dilation_h * p->in_w * p->in_c + kx0 * x_step);
        const int8_t *wr = w + (ky * p->kernel_w + kx0) * p->out_c;
        for (int32_t kx = kx0; kx < kx1; kx++) {
            acc += (int32_t)*xr * (int32_t)*wr;
            xr += x_step;
            wr += p->out_c;
        }
    }
    return acc;
}

void ec_depthwise_conv2d_s16(const ec_conv_params_t *p, const int16_t *input, const int8_t *filter,
                             const int32_t *bias, int16_t *output, int16_t *row)
{
    const int32_t row_len = p->out_w * p->out_c;
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *in_b = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int16_t *dst = row != NULL ? row : output + out_row;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
                /* the window's top-left tap: may lie in the padding, only clipped taps are read */
                const int32_t origin = (in_y0 * p->in_w + in_x0) * p->in_c;
                for (int32_t ic = 0; ic < p->in_c; ic++) {
                    for (int32_t m = 0; m < p->depth_multiplier; m++) {
                        const int32_t oc = ic * p->depth_multiplier + m;
                        int64_t acc = depthwise_acc_s16(p, in_b, origin + ic, filter + oc, ky0, ky1, kx0, kx1,
                                                        bias != NULL ? bias[oc] : 0);
                        dst[ox * p->out_c + oc] = out_s16(p->multiplier, p->shift, acc, oc, p->act_min, p->act_max);
                    }
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(int16_t));
        }
    }
}

void ec_fully_connected_s16(const ec_fc_params_t *p, const int16_t *input, const int8_t *filter,
                            const int32_t *bias, int16_t *output, int16_t *row)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *x = input + b * p->in_features;
        int16_t *dst = row != NULL ? row : output + b * p->out_features;
        for (int32_t o = 0; o < p->out_features; o++) {
            int64_t acc = dot_s16(x, filter + o * p->in_features, p->in_features, bias != NULL ? bias[o] : 0);
            dst[o] = out_s16(p->multiplier, p->shift, acc, o, p->act_min, p->act_max);
        }
        if (row != NULL)
            memcpy(output + b * p->out_features, row, (size_t)p->out_features * sizeof(int16_t));
    }
}

void ec_max_pool2d_s16(const ec_pool_params_t *p, const int16_t *input, int16_t *output, int16_t *row)
{
    const int32_t row_len = p->out_w * p->channels;
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *in_b = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int16_t *dst = row != NULL ? row : output + out_row;
            int32_t y0, y1;
            ec_pool_range(oy * p->stride_h - p->pad_top, p->kernel_h, p->in_h, &y0, &y1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                int32_t x0, x1;
                ec_pool_range(ox * p->stride_w - p->pad_left, p->kernel_w, p->in_w, &x0, &x1);
                for (int32_t c = 0; c < p->channels; c++) {
                    int32_t m = INT16_MIN;
                    for (int32_t y = y0; y < y1; y++)
                        for (int32_t x = x0; x < x1; x++) {
                            const int32_t v = in_b[(y * p->in_w + x) * p->channels + c];
                            m = v > m ? v : m;
                        }
                    m = m < p->act_min ? p->act_min : (m > p->act_max ? p->act_max : m);
                    dst[ox * p->channels + c] = (int16_t)m;
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(int16_t));
        }
    }
}

static int16_t sat_s16(int32_t v, int32_t lo, int32_t hi)
{
    return (int16_t)(v < lo ? lo : (v > hi ? hi : v));
}

static int32_t requantize_or_shift(int64_t acc, int32_t multiplier, int32_t shift)
{
    return multiplier != 0 ? ec_requantize_acc_s16(acc, multiplier, shift) : ec_shift_acc_s16(acc, shift);
}

void ec_add_s16(const ec_add_s16_params_t *p, const int16_t *a, const int16_t *b, int16_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) {
        const int64_t acc = (int64_t)a[i] * p->a_multiplier + (int64_t)b[i] * p->b_multiplier;
        output[i] = sat_s16(requantize_or_shift(acc, p->output_multiplier, p->output_shift), p->act_min, p->act_max);
    }
}

void ec_avg_pool2d_s16(const ec_pool_params_t *p, int32_t multiplier, int32_t shift, const int16_t *input,
                       int16_t *output, int16_t *row)
{
    const int32_t row_len = p->out_w * p->channels;
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *in_b = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int16_t *dst = row != NULL ? row : output + out_row;
            int32_t y0, y1;
            ec_pool_range(oy * p->stride_h - p->pad_top, p->kernel_h, p->in_h, &y0, &y1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                int32_t x0, x1;
                ec_pool_range(ox * p->stride_w - p->pad_left, p->kernel_w, p->in_w, &x0, &x1);
                const int64_t count = (int64_t)(y1 - y0) * (x1 - x0);
                for (int32_t c = 0; c < p->channels; c++) {
                    int64_t sum = 0;
                    for (int32_t y = y0; y < y1; y++)
                        for (int32_t x = x0; x < x1; x++)
                            sum += in_b[(y * p->in_w + x) * p->channels + c];
                    int64_t avg = 0; /* the mean with 16 fraction bits, half away from zero */
                    if (count > 0)
                        avg = (sum * 65536 + (sum >= 0 ? count / 2 : -(count / 2))) / count;
                    dst[ox * p->channels + c] = sat_s16(requantize_or_shift(avg, multiplier, shift - 16),
                                                        p->act_min, p->act_max);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(int16_t));
        }
    }
}

void ec_clamp_s16(const int16_t *input, int16_t *output, int32_t size, int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++) {
        const int32_t v = input[i];
        output[i] = (int16_t)(v < act_min ? act_min : (v > act_max ? act_max : v));
    }
}

void ec_requantize_s16(const int16_t *input, int16_t *output, int32_t size, int32_t multiplier, int32_t shift)
{
    for (int32_t i = 0; i < size; i++) {
        const int32_t v = multiplier != 0 ? ec_requantize_acc_s16(input[i], multiplier, shift)
                                          : ec_shift_acc_s16(input[i], shift);
        output[i] = (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
    }
}

void ec_quantize_f32_s16(const float *input, int16_t *output, int32_t size, float scale)
{
    for (int32_t i = 0; i < size; i++) {
        float v = input[i] / scale;
        int32_t q;
        if (v != v) {
            q = 0; /* NaN */
        } else if (v >= 32767.0f) {
            q = INT16_MAX;
        } else if (v <= -32768.0f) {
            q = INT16_MIN;
        } else {
            q = (int32_t)v; /* toward zero; v - q is exact */
            const float frac = v - (float)q;
            if (frac > 0.5f || (frac == 0.5f && (q & 1)))
                q++;
            else if (frac < -0.5f || (frac == -0.5f && (q & 1)))
                q--;
            q = q > INT16_MAX ? INT16_MAX : q;
        }
        output[i] = (int16_t)q;
    }
}

void ec_dequantize_s16_f32(const int16_t *input, float *output, int32_t size, float scale)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = (float)input[i] * scale;
}
