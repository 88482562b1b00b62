/*
 * ec_kernels_lut.h - unary activations: int8 through a 256-entry table, float32 functions.
 *
 * Every int8 -> int8 unary op (TFLite LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, RELU, RELU6,
 * RELU_N1_TO_1; ONNX Sigmoid, Tanh, HardSigmoid, HardSwish, LeakyRelu, Gelu, Erf, x * sigmoid(x)
 * in int8) is one table the compiler computes: table[(uint8_t)x].  Input and output may be the
 * same buffer (element i is written after it is read).
 */
#ifndef EC_KERNELS_LUT_H
#define EC_KERNELS_LUT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* output[i] = table[(uint8_t)input[i]] */
void ec_lut_s8(const int8_t *table, const int8_t *input, int8_t *output, int32_t size);

/* The float32 functions of ec_unary_f32 (edgecomp.tables.FLOAT_FNS). */
enum {
    EC_UNARY_SIGMOID = 0,
    EC_UNARY_TANH = 1,
    EC_UNARY_HARD_SIGMOID = 2, /* max(0, min(1, alpha * x + beta)) */
    EC_UNARY_HARD_SWISH = 3,   /* x * min(6, max(0, x + 3)) / 6 */
    EC_UNARY_LEAKY_RELU = 4,   /* x > 0 ? x : alpha * x */
    EC_UNARY_GELU = 5,         /* 0.5 x (1 + erf(x / sqrt 2)) */
    EC_UNARY_GELU_TANH = 6,    /* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
    EC_UNARY_ERF = 7,
    EC_UNARY_SILU = 8          /* x * sigmoid(x) */
};

void ec_unary_f32(int32_t fn, float alpha, float beta, const float *input, float *output, int32_t size);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_LUT_H */
