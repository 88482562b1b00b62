/*
 * ec_kernels_resize.c - resizing kernels (see ec_kernels_resize.h).
 */
#include "ec_kernels_resize.h"

#include <stddef.h>
#include <string.h>

/* An output row equal to the one before (the same input row) is copied from it. */
void ec_resize_nearest(const ec_resize_nearest_params_t *p, const void *input, void *output)
{
    const size_t pb = (size_t)p->pixel_bytes;
    const size_t in_row = (size_t)p->in_w * pb, out_row = (size_t)p->out_w * pb;
    const uint8_t *in = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    for (int32_t b = 0; b < p->batches; b++) {
        const uint8_t *image = in + (size_t)b * (size_t)p->in_h * in_row;
        for (int32_t y = 0; y < p->out_h; y++) {
            if (y > 0 && p->rows[y] == p->rows[y - 1]) {
                memcpy(dst, dst - out_row, out_row);
            } else {
                const uint8_t *src = image + (size_t)p->rows[y] * in_row;
                for (int32_t x = 0; x < p->out_w; x++)
                    memcpy(dst + (size_t)x * pb, src + (size_t)p->cols[x] * pb, pb);
            }
            dst += out_row;
        }
    }
}

void ec_resize_bilinear_s8(const ec_resize_bilinear_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t C = p->channels;
    const size_t in_row = (size_t)p->in_w * (size_t)C;
    int8_t *dst = output;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *image = input + (size_t)b * (size_t)p->in_h * in_row;
        for (int32_t y = 0; y < p->out_h; y++) {
            const int8_t *r0 = image + (size_t)p->rows[3 * y] * in_row;
            const int8_t *r1 = image + (size_t)p->rows[3 * y + 1] * in_row;
            const int32_t wy = p->rows[3 * y + 2];
            for (int32_t x = 0; x < p->out_w; x++) {
                const size_t c0 = (size_t)p->cols[3 * x] * (size_t)C, c1 = (size_t)p->cols[3 * x + 1] * (size_t)C;
                const int32_t wx = p->cols[3 * x + 2];
                for (int32_t c = 0; c < C; c++) {
                    const int32_t left = r0[c0 + c] * (1024 - wy) + r1[c0 + c] * wy;
                    const int32_t right = r0[c1 + c] * (1024 - wy) + r1[c1 + c] * wy;
                    const int32_t v = left * (1024 - wx) + right * wx;
                    *dst++ = (int8_t)((v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
                }
            }
        }
    }
}

void ec_resize_bilinear_f32(const ec_resize_bilinear_params_t *p, const float *input, float *output)
{
    const int32_t C = p->channels;
    const size_t in_row = (size_t)p->in_w * (size_t)C;
    float *dst = output;
    for (int32_t b = 0; b < p->batches; b++) {
        const float *image = input + (size_t)b * (size_t)p->in_h * in_row;
        for (int32_t y = 0; y < p->out_h; y++) {
            const float *r0 = image + (size_t)p->rows[3 * y] * in_row;
            const float *r1 = image + (size_t)p->rows[3 * y + 1] * in_row;
            const float fy = p->frows[y];
            for (int32_t x = 0; x < p->out_w; x++) {
                const size_t c0 = (size_t)p->cols[3 * x] * (size_t)C, c1 = (size_t)p->cols[3 * x + 1] * (size_t)C;
                const float fx = p->fcols[x];
                for (int32_t c = 0; c < C; c++) {
                    const float left = r0[c0 + c] * (1.0f - fy) + r1[c0 + c] * fy;
                    const float right = r0[c1 + c] * (1.0f - fy) + r1[c1 + c] * fy;
                    *dst++ = left * (1.0f - fx) + right * fx;
                }
            }
        }
    }
}
