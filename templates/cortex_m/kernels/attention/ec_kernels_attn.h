/*
 * ec_kernels_attn.h - the attention family: a matrix product of two activations over broadcast
 * batch axes (ONNX MatMul of rank >= 3) and layer normalization over the trailing axes, float32.
 */
#ifndef EC_KERNELS_ATTN_H
#define EC_KERNELS_ATTN_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EC_MATMUL_BATCH_DIMS 4

/* out[batch] = a[batch] (M x K) @ b[batch] (K x N), row-major, the output contiguous.  The batch
 * positions are walked as an odometer over `batch_dims` (unused leading dims are 1); `a_strides`
 * / `b_strides` are each operand's element step per batch dim (0 where it broadcasts). */
typedef struct {
    int32_t batch_dims[EC_MATMUL_BATCH_DIMS];
    int32_t a_strides[EC_MATMUL_BATCH_DIMS], b_strides[EC_MATMUL_BATCH_DIMS];
    int32_t rows, inner, cols;           /* M, K, N */
    int32_t lhs_offset, rhs_offset, output_offset; /* int8: -zero points of a and b, output zero point */
    int32_t multiplier, shift, act_min, act_max;   /* int8: s_a * s_b / s_out as TFLM computes it */
} ec_matmul_params_t;

/* int8 as TFLM's reference BATCH_MATMUL: int32 sums of (a + lhs_offset) * (b + rhs_offset), one
 * MultiplyByQuantizedMultiplier, + output_offset, clamped to [act_min, act_max]. */
void ec_batch_matmul_s8(const ec_matmul_params_t *p, const int8_t *a, const int8_t *b, int8_t *output);
void ec_batch_matmul_f32(const ec_matmul_params_t *p, const float *a, const float *b, float *output);

/* Each of `rows` runs of `count` values: (x - mean) / sqrt(var + epsilon) * scale + bias (bias may
 * be NULL); mean and variance in two passes, each value written after it is read (in place works). */
void ec_layer_norm_f32(int32_t rows, int32_t count, float epsilon, const float *scale, const float *bias,
                       const float *input, float *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_ATTN_H */
