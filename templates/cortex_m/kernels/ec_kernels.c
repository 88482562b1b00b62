/*
 * ec_kernels.c - reference kernels for edgecomp-generated models.
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels
 * operation for operation (same integer arithmetic, same rounding), so a
 * model imported from an int8 .tflite file gives bit-identical outputs.
 * The float32 kernels accumulate in the same order as TFLM's float kernels.
 *
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_kernels.h"
#include "ec_requant.h"

#include <math.h>
#include <string.h>

/* ---- integer helpers (TFLite's arithmetic, as its reference code writes it) ---------- */

int32_t ec_sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* division truncates toward zero */
}

int32_t ec_rounding_divide_by_pot(int32_t x, int exponent)
{
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t ec_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return ec_rounding_divide_by_pot(ec_sat_rounding_doubling_high_mul(ec_shift_left(x, left), multiplier), right);
}

/* One int8 ADD element: TFLM's AddFunc. */
int8_t ec_add_one_s8(const ec_add_params_t *p, int32_t a, int32_t b)
{
    EC_ADD_ELEMENT_S8(p, a, b, EC_RESCALE_SMALL);
}


/* The int8 conv epilogue: requantize one accumulator, clamp, then the fused residual add. */
static int8_t conv_out_s8(const ec_conv_params_t *p, int32_t acc, int32_t oc, const int8_t *skip)
{
    return ec_conv_out_elem_s8(p, acc, oc, skip, EC_SMALL);
}

static float conv_out_f32(const ec_conv_params_t *p, float acc, const float *skip)
{
    acc = ec_clip_f32(acc, p->act_min_f, p->act_max_f);
    if (skip != NULL)
        return ec_clip_f32(acc + *skip, p->residual->act_min_f, p->residual->act_max_f);
    return acc;
}

/* ---- convolution ------------------------------------------------------------ */

/*
 * The loops below are written once for int8 and once for float, kept next to
 * each other so they can be compared line by line.  `dst` is the row being
 * produced: the scratch row, or the output row itself when `row` is NULL.
 * Taps that fall into the padding are skipped (TFLM's "is point inside image"),
 * by clipping the kernel window once per output pixel.
 */

/* First and one-past-last kernel tap k with 0 <= origin + k * dilation < size. */
void ec_tap_range(int32_t origin, int32_t dilation, int32_t kernel, int32_t size, int32_t *first, int32_t *end)
{
    int32_t k0 = 0;
    int32_t k1 = kernel;
    while (k0 < kernel && origin + k0 * dilation < 0)
        k0++;
    while (k1 > k0 && origin + (k1 - 1) * dilation >= size)
        k1--;
    *first = k0;
    *end = k1;
}

/* sum over i of (w[i] + w_offset) * (x[i] + x_offset) */
static EC_NOINLINE int32_t dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset, int32_t w_offset)
{
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++)
        acc += (w[i] + w_offset) * (x[i] + x_offset);
    return acc;
}

static EC_NOINLINE float dot_f32(const float *x, const float *w, int32_t n, float acc)
{
    for (int32_t i = 0; i < n; i++)
        acc += x[i] * w[i];
    return acc;
}

void ec_conv2d_s8(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t in_c = p->in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * in_c;
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
                    const int8_t *w = filter + oc * p->kernel_h * p->kernel_w * in_c;
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        /* without dilation the taps kx0..kx1 of a kernel row are contiguous */
                        const int32_t kx_step = p->dilation_w == 1 ? kx1 - kx0 : 1;
                        for (int32_t kx = kx0; kx < kx1; kx += kx_step) {
                            const int32_t ix = in_x0 + kx * p->dilation_w;
                            acc += dot_s8(in_b + (iy * p->in_w + ix) * in_c, w + (ky * p->kernel_w + kx) * in_c,
                                          kx_step * in_c, p->input_offset, p->filter_offset);
                        }
                    }
                    if (bias != NULL)
                        acc += bias[oc];
                    const int32_t i = ox * p->out_c + oc;
                    dst[i] = conv_out_s8(p, acc, oc, skip != NULL ? skip + out_row + i : NULL);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_conv2d_f32(const ec_conv_params_t *p, const float *input, const float *filter,
                   const float *bias, float *output, float *row, const float *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t in_c = p->in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        const float *in_b = input + b * p->in_h * p->in_w * in_c;
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
                    const float *w = filter + oc * p->kernel_h * p->kernel_w * in_c;
                    float acc = 0.0f;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        const int32_t kx_step = p->dilation_w == 1 ? kx1 - kx0 : 1;
                        for (int32_t kx = kx0; kx < kx1; kx += kx_step) {
                            const int32_t ix = in_x0 + kx * p->dilation_w;
                            acc = dot_f32(in_b + (iy * p->in_w + ix) * in_c, w + (ky * p->kernel_w + kx) * in_c,
                                          kx_step * in_c, acc);
                        }
                    }
                    if (bias != NULL)
                        acc += bias[oc];
                    const int32_t i = ox * p->out_c + oc;
                    dst[i] = conv_out_f32(p, acc, skip != NULL ? skip + out_row + i : NULL);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}

/* One depthwise output value: the clipped window of channel `ic`, filter channel `oc`. */
static EC_NOINLINE int32_t depthwise_acc_s8(const ec_conv_params_t *p, const int8_t *in, int32_t origin,
                                            const int8_t *w,
                                int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1)
{
    const int32_t x_step = p->dilation_w * p->in_c;
    int32_t acc = 0;
    for (int32_t ky = ky0; ky < ky1; ky++) {
        const int8_t *xr = in + (origin + ky * p->dilation_h * p->in_w * p->in_c + kx0 * x_step);
        const int8_t *wr = w + (ky * p->kernel_w + kx0) * p->out_c;
        for (int32_t kx = kx0; kx < kx1; kx++) {
            acc += (*wr + p->filter_offset) * (*xr + p->input_offset);
            xr += x_step;
            wr += p->out_c;
        }
    }
    return acc;
}

static EC_NOINLINE float depthwise_acc_f32(const ec_conv_params_t *p, const float *in, int32_t origin,
                                           const float *w,
                               int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1)
{
    const int32_t x_step = p->dilation_w * p->in_c;
    float acc = 0.0f;
    for (int32_t ky = ky0; ky < ky1; ky++) {
        const float *xr = in + (origin + ky * p->dilation_h * p->in_w * p->in_c + kx0 * x_step);
        const float *wr = w + (ky * p->kernel_w + kx0) * p->out_c;
        for (int32_t kx = kx0; kx < kx1; kx++) {
            acc += *xr * *wr;
            xr += x_step;
            wr += p->out_c;
        }
    }
    return acc;
}

void ec_depthwise_conv2d_s8(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
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
                /* index of the window's top-left tap: may lie in the padding, only clipped taps are read */
                const int32_t origin = (in_y0 * p->in_w + in_x0) * p->in_c;
                for (int32_t ic = 0; ic < p->in_c; ic++) {
                    for (int32_t m = 0; m < p->depth_multiplier; m++) {
                        const int32_t oc = ic * p->depth_multiplier + m;
                        int32_t acc = depthwise_acc_s8(p, in_b, origin + ic, filter + oc, ky0, ky1, kx0, kx1);
                        if (bias != NULL)
                            acc += bias[oc];
                        const int32_t i = ox * p->out_c + oc;
                        dst[i] = conv_out_s8(p, acc, oc, skip != NULL ? skip + out_row + i : NULL);
                    }
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_depthwise_conv2d_f32(const ec_conv_params_t *p, const float *input, const float *filter,
                             const float *bias, float *output, float *row, const float *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
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
                const int32_t origin = (in_y0 * p->in_w + in_x0) * p->in_c;
                for (int32_t ic = 0; ic < p->in_c; ic++) {
                    for (int32_t m = 0; m < p->depth_multiplier; m++) {
                        const int32_t oc = ic * p->depth_multiplier + m;
                        float acc = depthwise_acc_f32(p, in_b, origin + ic, filter + oc, ky0, ky1, kx0, kx1);
                        if (bias != NULL)
                            acc += bias[oc];
                        const int32_t i = ox * p->out_c + oc;
                        dst[i] = conv_out_f32(p, acc, skip != NULL ? skip + out_row + i : NULL);
                    }
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}

/* ---- fully connected ------------------------------------------------------- */

void ec_fully_connected_s8(const ec_fc_params_t *p, const int8_t *input, const int8_t *filter,
                           const int32_t *bias, int8_t *output, int8_t *row)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * p->in_features;
        int8_t *dst = row != NULL ? row : output + b * p->out_features;
        for (int32_t o = 0; o < p->out_features; o++) {
            int32_t acc = dot_s8(x, filter + o * p->in_features, p->in_features, p->input_offset,
                                 p->filter_offset);
            if (bias != NULL)
                acc += bias[o];
            acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[o], p->shift[o]) + p->output_offset;
            dst[o] = (int8_t)ec_clip_i32(acc, p->act_min, p->act_max);
        }
        if (row != NULL)
            memcpy(output + b * p->out_features, row, (size_t)p->out_features);
    }
}

void ec_fully_connected_f32(const ec_fc_params_t *p, const float *input, const float *filter,
                            const float *bias, float *output, float *row)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const float *x = input + b * p->in_features;
        float *dst = row != NULL ? row : output + b * p->out_features;
        for (int32_t o = 0; o < p->out_features; o++) {
            float acc = dot_f32(x, filter + o * p->in_features, p->in_features, 0.0f);
            if (bias != NULL)
                acc += bias[o];
            dst[o] = ec_clip_f32(acc, p->act_min_f, p->act_max_f);
        }
        if (row != NULL)
            memcpy(output + b * p->out_features, row, (size_t)p->out_features * sizeof(float));
    }
}

/* ---- elementwise ------------------------------------------------------------- */

void ec_add_s8(const ec_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = ec_add_one_s8(p, a[i], b[i]);
}

void ec_add_f32(const ec_add_params_t *p, const float *a, const float *b, float *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = ec_clip_f32(a[i] + b[i], p->act_min_f, p->act_max_f);
}

void ec_requantize_s8(const int8_t *input, int8_t *output, int32_t size, int32_t input_offset,
                      int32_t multiplier, int32_t shift, int32_t output_offset)
{
    for (int32_t i = 0; i < size; i++) {
        int32_t v = ec_multiply_by_quantized_multiplier(input[i] + input_offset, multiplier, shift);
        output[i] = (int8_t)ec_clip_i32(v + output_offset, -128, 127);
    }
}

void ec_clamp_s8(const int8_t *input, int8_t *output, int32_t size, int32_t act_min, int32_t act_max)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = (int8_t)ec_clip_i32(input[i], act_min, act_max);
}

void ec_clamp_f32(const float *input, float *output, int32_t size, float act_min, float act_max)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = ec_clip_f32(input[i], act_min, act_max);
}

void ec_quantize_f32_s8(const float *input, int8_t *output, int32_t size, float scale, int32_t zero_point)
{
    for (int32_t i = 0; i < size; i++) {
        float r = roundf(input[i] / scale); /* half away from zero, like std::round */
        int32_t q;
        if (r >= 2147483520.0f) /* (int32_t) of an out-of-range float is undefined */
            q = INT32_MAX;
        else if (r <= -2147483648.0f)
            q = INT32_MIN;
        else
            q = (int32_t)r;
        int64_t v = (int64_t)q + zero_point;
        output[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}

void ec_dequantize_s8_f32(const int8_t *input, float *output, int32_t size, double scale, int32_t zero_point)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = (float)(scale * (double)(input[i] - zero_point));
}

void ec_concat_part(void *output, const void *input, int32_t outer, int32_t in_bytes, int32_t out_bytes,
                    int32_t offset)
{
    uint8_t *dst = (uint8_t *)output + offset;
    const uint8_t *src = (const uint8_t *)input;
    for (int32_t i = 0; i < outer; i++)
        memcpy(dst + (size_t)i * (size_t)out_bytes, src + (size_t)i * (size_t)in_bytes, (size_t)in_bytes);
}

/* ---- pooling ----------------------------------------------------------------- */

/* The window of output (oy, ox), clipped to the input: [y0, y1) x [x0, x1). */
typedef struct {
    int32_t y0, y1, x0, x1;
} window_t;

static window_t pool_window(const ec_pool_params_t *p, int32_t oy, int32_t ox)
{
    window_t w;
    const int32_t iy = oy * p->stride_h - p->pad_top;
    const int32_t ix = ox * p->stride_w - p->pad_left;
    w.y0 = iy < 0 ? 0 : iy;
    w.y1 = iy + p->kernel_h < p->in_h ? iy + p->kernel_h : p->in_h;
    w.x0 = ix < 0 ? 0 : ix;
    w.x1 = ix + p->kernel_w < p->in_w ? ix + p->kernel_w : p->in_w;
    return w;
}

void ec_max_pool2d_s8(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const int32_t row_len = p->out_w * p->channels;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const window_t w = pool_window(p, oy, ox);
                for (int32_t c = 0; c < p->channels; c++) {
                    int32_t m = -128;
                    for (int32_t y = w.y0; y < w.y1; y++)
                        for (int32_t x = w.x0; x < w.x1; x++) {
                            const int32_t v = in_b[(y * p->in_w + x) * p->channels + c];
                            m = v > m ? v : m;
                        }
                    dst[ox * p->channels + c] = (int8_t)ec_clip_i32(m, p->act_min, p->act_max);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_max_pool2d_f32(const ec_pool_params_t *p, const float *input, float *output, float *row)
{
    const int32_t row_len = p->out_w * p->channels;
    for (int32_t b = 0; b < p->batches; b++) {
        const float *in_b = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            float *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const window_t w = pool_window(p, oy, ox);
                for (int32_t c = 0; c < p->channels; c++) {
                    float m = -INFINITY;
                    for (int32_t y = w.y0; y < w.y1; y++)
                        for (int32_t x = w.x0; x < w.x1; x++) {
                            const float v = in_b[(y * p->in_w + x) * p->channels + c];
                            m = v > m ? v : m;
                        }
                    dst[ox * p->channels + c] = ec_clip_f32(m, p->act_min_f, p->act_max_f);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}

void ec_avg_pool2d_s8(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const int32_t row_len = p->out_w * p->channels;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const window_t w = pool_window(p, oy, ox);
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0); /* in-bounds taps only */
                for (int32_t c = 0; c < p->channels; c++) {
                    int32_t acc = 0;
                    for (int32_t y = w.y0; y < w.y1; y++)
                        for (int32_t x = w.x0; x < w.x1; x++)
                            acc += in_b[(y * p->in_w + x) * p->channels + c];
                    if (count > 0) /* round half away from zero, as TFLM */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    dst[ox * p->channels + c] = (int8_t)ec_clip_i32(acc, p->act_min, p->act_max);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_avg_pool2d_f32(const ec_pool_params_t *p, const float *input, float *output, float *row)
{
    const int32_t row_len = p->out_w * p->channels;
    for (int32_t b = 0; b < p->batches; b++) {
        const float *in_b = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            float *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const window_t w = pool_window(p, oy, ox);
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
                for (int32_t c = 0; c < p->channels; c++) {
                    float acc = 0.0f;
                    for (int32_t y = w.y0; y < w.y1; y++)
                        for (int32_t x = w.x0; x < w.x1; x++)
                            acc += in_b[(y * p->in_w + x) * p->channels + c];
                    const float avg = count > 0 ? acc / (float)count : 0.0f;
                    dst[ox * p->channels + c] = ec_clip_f32(avg, p->act_min_f, p->act_max_f);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}

/* ---- softmax ----------------------------------------------------------------- */

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
