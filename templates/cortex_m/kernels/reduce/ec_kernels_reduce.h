/*
 * ec_kernels_reduce.h - reductions along axes: mean, argmax, softmax over any axis, L2
 * normalization (int8 bit-exact with TensorFlow Lite Micro's reference kernels, and float32).
 *
 * A reduction walks its input as two nested odometers: the kept axes (one output per position,
 * the outputs in memory order) and, for each, the reduced axes.  Runs of consecutive axes of one
 * kind are merged by the generator (edgecomp/axes.py: geometry), so three runs of each kind cover
 * every tensor of up to six dimensions; unused runs have size 1.
 */
#ifndef EC_KERNELS_REDUCE_H
#define EC_KERNELS_REDUCE_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EC_REDUCE_GROUPS 3

typedef struct {
    int32_t kept_dims[EC_REDUCE_GROUPS], kept_strides[EC_REDUCE_GROUPS]; /* input element strides */
    int32_t red_dims[EC_REDUCE_GROUPS], red_strides[EC_REDUCE_GROUPS];
    int32_t count;                          /* values summed per output: the product of red_dims */
    int32_t input_offset, output_offset;    /* int8: -zero point in, zero point out */
    int32_t multiplier, shift;              /* int8 mean: s_in / (s_out * count) as TFLM computes it */
    int32_t act_min, act_max;               /* int8 */
} ec_reduce_params_t;

/* Mean over the reduced axes: int8 as TFLM's QuantizedMeanOrSum (the int32 sum less
 * zero point * count, one requantization); float32 summed in input order, then divided. */
void ec_mean_s8(const ec_reduce_params_t *p, const int8_t *input, int8_t *output);
void ec_mean_f32(const ec_reduce_params_t *p, const float *input, float *output);

/* Index of the largest value along the (one) reduced run, the first on ties (TFLM's ARG_MAX). */
void ec_argmax_s8(const ec_reduce_params_t *p, const int8_t *input, int32_t *output);
void ec_argmax_f32(const ec_reduce_params_t *p, const float *input, int32_t *output);

/* Softmax along an axis that is not the innermost: `rows` of the params = outer * inner rows of
 * `depth` values `inner` apart.  Each row is gathered into `work` (depth values), run through
 * ec_softmax_s8 / ec_softmax_f32 and scattered back, so the output may coincide with the input. */
void ec_softmax_axis_s8(const ec_softmax_params_t *p, int32_t inner, const int8_t *input, int8_t *output,
                        int8_t *work);
void ec_softmax_axis_f32(const ec_softmax_params_t *p, int32_t inner, const float *input, float *output,
                         float *work);

/* x / |x| along the last axis of `rows` rows of `depth` values: int8 as TFLM (output scale 1/128,
 * zero point 0; `input_offset` = -input zero point), float32 as TFLM (|x| at least 1e-6). */
void ec_l2_normalization_s8(int32_t rows, int32_t depth, int32_t input_offset, const int8_t *input,
                            int8_t *output);
void ec_l2_normalization_f32(int32_t rows, int32_t depth, const float *input, float *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_REDUCE_H */
