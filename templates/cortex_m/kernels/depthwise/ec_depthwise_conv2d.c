/*
 * ec_depthwise_conv2d.c - reference depthwise convolution kernels (int8, float32).
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels operation for operation (same
 * integer arithmetic, same rounding), so a model imported from an int8 .tflite file gives
 * bit-identical outputs; the float32 kernels accumulate in the same order as TFLM's float kernels.
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_reference.h"

#include <string.h>

/* The loops as in ec_conv2d.c. */

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
