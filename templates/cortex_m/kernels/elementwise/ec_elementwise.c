/*
 * ec_elementwise.c - reference elementwise kernels (add, requantize, clamp), conversions and concatenation.
 *
 * The int8 kernels follow TensorFlow Lite Micro's reference kernels operation for operation (same
 * integer arithmetic, same rounding), so a model imported from an int8 .tflite file gives
 * bit-identical outputs; the float32 kernels accumulate in the same order as TFLM's float kernels.
 * Kept small on purpose: no large locals, so one inference needs little stack.
 */
#include "ec_reference.h"

#include <math.h>
#include <string.h>

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

void ec_dequantize_s8_f32(const int8_t *input, float *output, int32_t size, float scale, int32_t zero_point)
{
    for (int32_t i = 0; i < size; i++)
        output[i] = (float)(input[i] - zero_point) * scale;
}

void ec_concat_part(void *output, const void *input, int32_t outer, int32_t in_bytes, int32_t out_bytes,
                    int32_t offset)
{
    uint8_t *dst = (uint8_t *)output + offset;
    const uint8_t *src = (const uint8_t *)input;
    for (int32_t i = 0; i < outer; i++)
        memcpy(dst + (size_t)i * (size_t)out_bytes, src + (size_t)i * (size_t)in_bytes, (size_t)in_bytes);
}
