/*
 * ec_conv2d.c - reference convolution kernels (int8, float32).
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels operation for operation (same
 * integer arithmetic, same rounding), so a model imported from an int8 .tflite file gives
 * bit-identical outputs; the float32 kernels accumulate in the same order as TFLM's float kernels.
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_reference.h"

#include <string.h>

/*
 * The loops below are written once for int8 and once for float, kept next to
 * each other so they can be compared line by line.  `dst` is the row being
 * produced: the scratch row, or the output row itself when `row` is NULL.
 * Taps that fall into the padding are skipped (TFLM's "is point inside image"),
 * by clipping the kernel window once per output pixel.
 */

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
