/*
 * ec_pooling.c - reference pooling kernels (max, average; int8, float32).
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels operation for operation (same
 * integer arithmetic, same rounding), so a model imported from an int8 .tflite file gives
 * bit-identical outputs; the float32 kernels accumulate in the same order as TFLM's float kernels.
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_reference.h"

#include <math.h>
#include <string.h>

/* The window of output (oy, ox), clipped to the input: [y0, y1) x [x0, x1). */
typedef struct {
    int32_t y0, y1, x0, x1;
} window_t;

static window_t pool_window(const ec_pool_params_t *p, int32_t oy, int32_t ox)
{
    window_t w;
    const int32_t iy = oy * p->stride_h - p->pad_top;
    const int32_t ix = ox * p->stride_w - p->pad_left;
    ec_pool_range(iy, p->kernel_h, p->in_h, &w.y0, &w.y1);
    ec_pool_range(ix, p->kernel_w, p->in_w, &w.x0, &w.x1);
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
