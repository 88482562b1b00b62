/*
 * ec_kernels_binary.h - elementwise ops with broadcasting: binary ops (TFLite ADD, SUB, MUL,
 * MAXIMUM, MINIMUM, SQUARED_DIFFERENCE; ONNX Add, Sub, Mul, Min, Max), PRELU (x and a broadcast
 * alpha) and a per-channel affine x * w + b (ONNX constant Sub / Add / Mul / Div, input
 * normalisation).  int8 numerics are TFLM's reference kernels (their broadcast applies one
 * element function at every broadcast index); float32 within rounding of them.
 *
 * The broadcast is an odometer over at most EC_BCAST_MAX_DIMS output axes (the compiler merges
 * axes that broadcast alike): for each output element, in output order, its elements of a and b
 * are at the sums of their strides (0 on a broadcast axis).  The output may coincide with an
 * input of its size (element i is written after it is read).
 */
#ifndef EC_KERNELS_BINARY_H
#define EC_KERNELS_BINARY_H

#include <stdint.h>

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EC_BCAST_MAX_DIMS 6

typedef struct {
    int32_t rank;                            /* >= 1 */
    int32_t dims[EC_BCAST_MAX_DIMS];         /* output shape, outermost first */
    int32_t a_strides[EC_BCAST_MAX_DIMS];    /* element strides of a (0: broadcast) */
    int32_t b_strides[EC_BCAST_MAX_DIMS];    /* element strides of b */
} ec_bcast_t;

enum {
    EC_BINARY_ADD = 0,
    EC_BINARY_SUB = 1,
    EC_BINARY_MUL = 2,
    EC_BINARY_MAXIMUM = 3,
    EC_BINARY_MINIMUM = 4,
    EC_BINARY_SQUARED_DIFFERENCE = 5
};

typedef struct {
    int32_t op;
    /* int8: TFLite's parameters.  ADD, SUB, SQUARED_DIFFERENCE: all fields; MUL: the offsets and
     * output_multiplier / output_shift (a general shift, > 0 is left); the clamp range for all. */
    ec_add_params_t q;
    ec_bcast_t bc;
} ec_binary_params_t;

void ec_binary_s8(const ec_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output);
void ec_binary_f32(const ec_binary_params_t *p, const float *a, const float *b, float *output);

/* PRELU: x >= 0 ? x : alpha * x.  int8 (TFLM): x + input_offset >= 0 ? MBQM(xi, m1, s1) :
 * MBQM(xi * w, m2, s2), plus output_offset; w = alpha8[j] + alpha_offset, or alpha16[j]. */
typedef struct {
    int32_t input_offset, output_offset;
    int32_t multiplier_1, shift_1, multiplier_2, shift_2;
    int32_t alpha_offset;
    const int8_t *alpha8;   /* int8 alpha, or NULL */
    const int16_t *alpha16; /* when alpha8 is NULL */
    ec_bcast_t bc;          /* a = x, b = alpha */
} ec_prelu_params_t;

void ec_prelu_s8(const ec_prelu_params_t *p, const int8_t *input, int8_t *output);
void ec_prelu_f32(const ec_prelu_params_t *p, const float *input, const float *alpha, float *output);

/* int8: MBQM((x + input_offset) * w[j] + b[j], multiplier, shift) + output_offset, clamped;
 * float32: x * scale[j] + bias[j], clamped. */
typedef struct {
    int32_t input_offset, output_offset, multiplier, shift;
    int32_t act_min, act_max;
    float act_min_f, act_max_f;
    const int32_t *w, *b;
    const float *scale, *bias;
    ec_bcast_t bc; /* a = x, b = the constants */
} ec_affine_params_t;

void ec_affine_s8(const ec_affine_params_t *p, const int8_t *input, int8_t *output);
void ec_affine_f32(const ec_affine_params_t *p, const float *input, float *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_BINARY_H */
