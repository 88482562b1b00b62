/*
 * ec_kernels_pool_ext.c - dilated max pool, average pool counting the padding (see
 * ec_kernels_pool_ext.h).  The window of output (oy, ox) starts at (oy * stride - pad_top,
 * ox * stride - pad_left); ec_tap_range gives its in-bounds taps.
 */
#include "ec_kernels_pool_ext.h"

#include <math.h>
#include <string.h>

/* The in-bounds taps [k0, k1) of a window and, for an average counting the padding, how many of
 * its taps lie inside the padded input. */
typedef struct {
    int32_t y0, y1, x0, x1; /* tap indices */
    int32_t iy, ix;         /* input coordinates of tap (0, 0) */
    int32_t divisor;
} taps_t;

static taps_t window_taps(const ec_pool_ext_params_t *p, int32_t oy, int32_t ox)
{
    const ec_pool_params_t *q = &p->pool;
    taps_t t;
    t.iy = oy * q->stride_h - q->pad_top;
    t.ix = ox * q->stride_w - q->pad_left;
    ec_tap_range(t.iy, p->dilation_h, q->kernel_h, q->in_h, &t.y0, &t.y1);
    ec_tap_range(t.ix, p->dilation_w, q->kernel_w, q->in_w, &t.x0, &t.x1);
    t.divisor = (t.y1 - t.y0) * (t.x1 - t.x0);
    if (p->count_include_pad) {
        int32_t a0, a1, b0, b1;
        ec_tap_range(t.iy + q->pad_top, p->dilation_h, q->kernel_h, q->in_h + q->pad_top + p->pad_bottom, &a0, &a1);
        ec_tap_range(t.ix + q->pad_left, p->dilation_w, q->kernel_w, q->in_w + q->pad_left + p->pad_right, &b0, &b1);
        t.divisor = (a1 - a0) * (b1 - b0);
    }
    return t;
}

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static float clamp_f32(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The input value of tap (y, x) of channel c of the window t. */
#define AT(y, x) in_b[((t.iy + (y) * p->dilation_h) * q->in_w + t.ix + (x) * p->dilation_w) * q->channels + c]

/*
 * The four kernels share one loop nest (written out in each, as in ec_kernels.c, so the int8 and
 * float versions can be compared line by line): per output row, per pixel, per channel.
 */

void ec_max_pool2d_ext_s8(const ec_pool_ext_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const ec_pool_params_t *q = &p->pool;
    const int32_t row_len = q->out_w * q->channels;
    for (int32_t b = 0; b < q->batches; b++) {
        const int8_t *in_b = input + b * q->in_h * q->in_w * q->channels;
        for (int32_t oy = 0; oy < q->out_h; oy++) {
            const int32_t out_row = (b * q->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < q->out_w; ox++) {
                const taps_t t = window_taps(p, oy, ox);
                for (int32_t c = 0; c < q->channels; c++) {
                    int32_t m = -128;
                    for (int32_t y = t.y0; y < t.y1; y++)
                        for (int32_t x = t.x0; x < t.x1; x++)
                            m = AT(y, x) > m ? AT(y, x) : m;
                    dst[ox * q->channels + c] = (int8_t)clamp_i32(m, q->act_min, q->act_max);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_max_pool2d_ext_f32(const ec_pool_ext_params_t *p, const float *input, float *output, float *row)
{
    const ec_pool_params_t *q = &p->pool;
    const int32_t row_len = q->out_w * q->channels;
    for (int32_t b = 0; b < q->batches; b++) {
        const float *in_b = input + b * q->in_h * q->in_w * q->channels;
        for (int32_t oy = 0; oy < q->out_h; oy++) {
            const int32_t out_row = (b * q->out_h + oy) * row_len;
            float *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < q->out_w; ox++) {
                const taps_t t = window_taps(p, oy, ox);
                for (int32_t c = 0; c < q->channels; c++) {
                    float m = -INFINITY;
                    for (int32_t y = t.y0; y < t.y1; y++)
                        for (int32_t x = t.x0; x < t.x1; x++)
                            m = AT(y, x) > m ? AT(y, x) : m;
                    dst[ox * q->channels + c] = clamp_f32(m, q->act_min_f, q->act_max_f);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}

void ec_avg_pool2d_ext_s8(const ec_pool_ext_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const ec_pool_params_t *q = &p->pool;
    const int32_t row_len = q->out_w * q->channels;
    for (int32_t b = 0; b < q->batches; b++) {
        const int8_t *in_b = input + b * q->in_h * q->in_w * q->channels;
        for (int32_t oy = 0; oy < q->out_h; oy++) {
            const int32_t out_row = (b * q->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < q->out_w; ox++) {
                const taps_t t = window_taps(p, oy, ox);
                const int32_t d = t.divisor, padded = d - (t.y1 - t.y0) * (t.x1 - t.x0);
                for (int32_t c = 0; c < q->channels; c++) {
                    int32_t acc = padded * p->zero_point; /* the padded taps are real zeros */
                    for (int32_t y = t.y0; y < t.y1; y++)
                        for (int32_t x = t.x0; x < t.x1; x++)
                            acc += AT(y, x);
                    if (d > 0) /* round half away from zero, as TFLM */
                        acc = acc > 0 ? (acc + d / 2) / d : (acc - d / 2) / d;
                    dst[ox * q->channels + c] = (int8_t)clamp_i32(acc, q->act_min, q->act_max);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_avg_pool2d_ext_f32(const ec_pool_ext_params_t *p, const float *input, float *output, float *row)
{
    const ec_pool_params_t *q = &p->pool;
    const int32_t row_len = q->out_w * q->channels;
    for (int32_t b = 0; b < q->batches; b++) {
        const float *in_b = input + b * q->in_h * q->in_w * q->channels;
        for (int32_t oy = 0; oy < q->out_h; oy++) {
            const int32_t out_row = (b * q->out_h + oy) * row_len;
            float *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < q->out_w; ox++) {
                const taps_t t = window_taps(p, oy, ox);
                for (int32_t c = 0; c < q->channels; c++) {
                    float acc = 0.0f;
                    for (int32_t y = t.y0; y < t.y1; y++)
                        for (int32_t x = t.x0; x < t.x1; x++)
                            acc += AT(y, x);
                    const float avg = t.divisor > 0 ? acc / (float)t.divisor : 0.0f;
                    dst[ox * q->channels + c] = clamp_f32(avg, q->act_min_f, q->act_max_f);
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len * sizeof(float));
        }
    }
}
