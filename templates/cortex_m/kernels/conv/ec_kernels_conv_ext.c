/*
 * ec_kernels_conv_ext.c - grouped and transpose convolutions (see ec_kernels_conv_ext.h).
 *
 * int8 as TFLM: accumulate (x + input_offset) * (w + filter_offset) in int32, add the bias,
 * MultiplyByQuantizedMultiplier per output channel, add the output offset, clamp; then the fused
 * residual add (TFLite ADD numerics) when there is one.  The loops are written once for int8 and
 * once for float, next to each other.
 */
#include "ec_kernels_conv_ext.h"

#include <string.h>

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static float clamp_f32(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The int8 convolution epilogue of ec_kernels.c: requantize, clamp, the fused residual add. */
static int8_t out_s8(const ec_conv_params_t *p, int32_t acc, int32_t oc, const int8_t *skip)
{
    acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
    acc = clamp_i32(acc, p->act_min, p->act_max);
    if (skip != NULL)
        return ec_add_one_s8(p->residual, acc, *skip);
    return (int8_t)acc;
}

static float out_f32(const ec_conv_params_t *p, float acc, const float *skip)
{
    acc = clamp_f32(acc, p->act_min_f, p->act_max_f);
    if (skip != NULL)
        return clamp_f32(acc + *skip, p->residual->act_min_f, p->residual->act_max_f);
    return acc;
}

/* ---- grouped convolution --------------------------------------------------------------------- */

void ec_conv2d_grouped_s8(const ec_conv_params_t *p, int32_t groups, const int8_t *input, const int8_t *filter,
                          const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t ig = p->in_c / groups, og = p->out_c / groups;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int8_t *w = filter + oc * p->kernel_h * p->kernel_w * ig;
                    const int32_t c0 = (oc / og) * ig; /* the group's first input channel */
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            const int8_t *x = in_b + (iy * p->in_w + in_x0 + kx * p->dilation_w) * p->in_c + c0;
                            const int8_t *wk = w + (ky * p->kernel_w + kx) * ig;
                            for (int32_t i = 0; i < ig; i++)
                                acc += (wk[i] + p->filter_offset) * (x[i] + p->input_offset);
                        }
                    }
                    if (bias != NULL)
                        acc += bias[oc];
                    const int32_t i = ox * p->out_c + oc;
                    dst[i] = out_s8(p, acc, oc, skip != NULL ? skip + out_row + i : NULL);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_conv2d_grouped_f32(const ec_conv_params_t *p, int32_t groups, const float *input, const float *filter,
                           const float *bias, float *output, float *row, const float *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t ig = p->in_c / groups, og = p->out_c / groups;
    for (int32_t b = 0; b < p->batches; b++) {
        const float *in_b = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            float *dst = row != NULL ? row : output + out_row;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const float *w = filter + oc * p->kernel_h * p->kernel_w * ig;
                    const int32_t c0 = (oc / og) * ig;
                    float acc = 0.0f;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            const float *x = in_b + (iy * p->in_w + in_x0 + kx * p->dilation_w) * p->in_c + c0;
                            const float *wk = w + (ky * p->kernel_w + kx) * ig;
                            for (int32_t i = 0; i < ig; i++)
                                acc += x[i] * wk[i];
                        }
                    }
                    if (bias != NULL)
                        acc += bias[oc];
                    const int32_t i = ox * p->out_c + oc;
                    dst[i] = out_f32(p, acc, skip != NULL ? skip + out_row + i : NULL);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}

/* ---- transpose convolution ------------------------------------------------------------------- */

/* The taps k of a kernel of n taps with origin + k * dilation = i * stride for some input index
 * 0 <= i < size: the output coordinate's sources.  Returns how many; taps[] and idx[] get them. */
static int32_t sources(int32_t origin, int32_t stride, int32_t dilation, int32_t n, int32_t size, int32_t *taps,
                       int32_t *idx)
{
    int32_t m = 0;
    for (int32_t k = 0; k < n; k++) {
        const int32_t t = origin - k * dilation;
        if (t >= 0 && t % stride == 0 && t / stride < size) {
            taps[m] = k;
            idx[m] = t / stride;
            m++;
        }
    }
    return m;
}

#define EC_TCONV_MAX_TAPS 16 /* kernel_h and kernel_w at most this (the generator checks) */

void ec_transpose_conv2d_s8(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output)
{
    int32_t ty[EC_TCONV_MAX_TAPS], iy[EC_TCONV_MAX_TAPS], tx[EC_TCONV_MAX_TAPS], ix[EC_TCONV_MAX_TAPS];
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t ny = sources(oy + p->pad_top, p->stride_h, p->dilation_h, p->kernel_h, p->in_h, ty, iy);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t nx = sources(ox + p->pad_left, p->stride_w, p->dilation_w, p->kernel_w, p->in_w, tx, ix);
                int8_t *dst = output + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int8_t *w = filter + oc * p->kernel_h * p->kernel_w * p->in_c;
                    int32_t acc = 0;
                    for (int32_t a = 0; a < ny; a++)
                        for (int32_t c = 0; c < nx; c++) {
                            const int8_t *x = in_b + (iy[a] * p->in_w + ix[c]) * p->in_c;
                            const int8_t *wk = w + (ty[a] * p->kernel_w + tx[c]) * p->in_c;
                            for (int32_t i = 0; i < p->in_c; i++)
                                acc += (x[i] + p->input_offset) * (wk[i] + p->filter_offset);
                        }
                    if (bias != NULL)
                        acc += bias[oc];
                    dst[oc] = out_s8(p, acc, oc, NULL);
                }
            }
        }
    }
}

void ec_transpose_conv2d_f32(const ec_conv_params_t *p, const float *input, const float *filter,
                             const float *bias, float *output)
{
    int32_t ty[EC_TCONV_MAX_TAPS], iy[EC_TCONV_MAX_TAPS], tx[EC_TCONV_MAX_TAPS], ix[EC_TCONV_MAX_TAPS];
    for (int32_t b = 0; b < p->batches; b++) {
        const float *in_b = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t ny = sources(oy + p->pad_top, p->stride_h, p->dilation_h, p->kernel_h, p->in_h, ty, iy);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t nx = sources(ox + p->pad_left, p->stride_w, p->dilation_w, p->kernel_w, p->in_w, tx, ix);
                float *dst = output + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const float *w = filter + oc * p->kernel_h * p->kernel_w * p->in_c;
                    float acc = 0.0f;
                    for (int32_t a = 0; a < ny; a++)
                        for (int32_t c = 0; c < nx; c++) {
                            const float *x = in_b + (iy[a] * p->in_w + ix[c]) * p->in_c;
                            const float *wk = w + (ty[a] * p->kernel_w + tx[c]) * p->in_c;
                            for (int32_t i = 0; i < p->in_c; i++)
                                acc += x[i] * wk[i];
                        }
                    if (bias != NULL)
                        acc += bias[oc];
                    dst[oc] = out_f32(p, acc, NULL);
                }
            }
        }
    }
}
