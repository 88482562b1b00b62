/*
 * ec_kernels_s16.h - int16 ("16x8", Q15-style) kernels for edgecomp-generated models.
 *
 * Activations are int16, symmetric (zero point 0); weights int8, symmetric, one
 * scale per output channel; biases int32 (scale s_in * s_w).  Products are
 * summed in a 64-bit accumulator.  The parameter blocks are the ones of
 * ec_kernels.h (offsets unused: every zero point is 0).
 *
 * Requantization of an accumulator `acc` of output channel c (see
 * docs/internals.md, "int16 kernels"):
 *
 *   y = acc * multiplier[c] * 2^-n,  n = 31 - shift[c],
 *
 * rounded to nearest, ties to even (as ONNX QuantizeLinear rounds: with
 * power-of-two scales exact ties are frequent), then clamped to [act_min, act_max].  multiplier is Q31 in
 * [2^30, 2^31) (or 0), shift > 0 is left.  When a layer's `multiplier` pointer
 * is NULL every multiplier is 2^30 (power-of-two scales) and the kernel uses
 * the shift alone: y = acc * 2^-k, k = 1 - shift[c], rounded the same way
 * (ties to even) - the same numbers, no multiply.
 *
 * Row contract as in ec_kernels.h: with `row` != NULL every output row is
 * computed into `row` (out_w * out_c int16 values) and then copied to the
 * output, so the output may overlap the input as the memory planner allows.
 */
#ifndef EC_KERNELS_S16_H
#define EC_KERNELS_S16_H

#include <stddef.h>
#include <stdint.h>

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* acc * multiplier * 2^(shift - 31), rounded to nearest (ties to even), saturated to int32. */
int32_t ec_requantize_acc_s16(int64_t acc, int32_t multiplier, int32_t shift);
/* The same for multiplier 2^30: only shifts. */
int32_t ec_shift_acc_s16(int64_t acc, int32_t shift);

void ec_conv2d_s16(const ec_conv_params_t *p, const int16_t *input, const int8_t *filter,
                   const int32_t *bias, int16_t *output, int16_t *row);
void ec_depthwise_conv2d_s16(const ec_conv_params_t *p, const int16_t *input, const int8_t *filter,
                             const int32_t *bias, int16_t *output, int16_t *row);
void ec_fully_connected_s16(const ec_fc_params_t *p, const int16_t *input, const int8_t *filter,
                            const int32_t *bias, int16_t *output, int16_t *row);
void ec_max_pool2d_s16(const ec_pool_params_t *p, const int16_t *input, int16_t *output, int16_t *row);
/* a + b with other scales: y = requantize(a * a_multiplier + b * b_multiplier, output_multiplier,
 * output_shift) (the requantization above; a_multiplier, b_multiplier are s_a / s_b over twice
 * the larger one, in units of 2^-input_bits), clamped to [act_min, act_max]. */
typedef struct {
    int32_t a_multiplier, b_multiplier;
    int32_t output_multiplier, output_shift; /* output_multiplier 0: shift only */
    int32_t act_min, act_max;
} ec_add_s16_params_t;

void ec_add_s16(const ec_add_s16_params_t *p, const int16_t *a, const int16_t *b, int16_t *output, int32_t size);
/* Average of the window clipped to the input (padding not counted), as sum * 2^16 / count
 * rounded half away from zero, then requantized with (multiplier, shift - 16): s_in / s_out. */
void ec_avg_pool2d_s16(const ec_pool_params_t *p, int32_t multiplier, int32_t shift, const int16_t *input,
                       int16_t *output, int16_t *row);
void ec_clamp_s16(const int16_t *input, int16_t *output, int32_t size, int32_t act_min, int32_t act_max);
/* int16 -> int16 with another scale: one multiplier/shift (multiplier 0: shift only). */
void ec_requantize_s16(const int16_t *input, int16_t *output, int32_t size, int32_t multiplier, int32_t shift);

/* float -> int16 (zero point 0): x / scale in float, rounded half to even (as ONNX
 * QuantizeLinear), saturated to [-32768, 32767]; NaN gives 0. */
void ec_quantize_f32_s16(const float *input, int16_t *output, int32_t size, float scale);
/* int16 -> float (zero point 0): (float)q * scale in float, as ONNX DequantizeLinear. */
void ec_dequantize_s16_f32(const int16_t *input, float *output, int32_t size, float scale);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_S16_H */
