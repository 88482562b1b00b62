/*
 * ec_fully_connected.c - reference fully connected kernels (int8, float32).
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels operation for operation (same
 * integer arithmetic, same rounding), so a model imported from an int8 .tflite file gives
 * bit-identical outputs; the float32 kernels accumulate in the same order as TFLM's float kernels.
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_reference.h"

#include <string.h>

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
