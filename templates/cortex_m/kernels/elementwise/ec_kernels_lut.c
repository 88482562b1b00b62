/*
 * ec_kernels_lut.c - unary activations (see ec_kernels_lut.h).
 */
#include "ec_kernels_lut.h"

#include <math.h>

void ec_lut_s8(const int8_t *table, const int8_t *input, int8_t *output, int32_t size)
{
    const uint8_t *in = (const uint8_t *)input;
    int32_t i = 0;
    for (; i + 4 <= size; i += 4) { /* four loads before four stores: in place is safe */
        uint8_t a = in[i], b = in[i + 1], c = in[i + 2], d = in[i + 3];
        output[i] = table[a];
        output[i + 1] = table[b];
        output[i + 2] = table[c];
        output[i + 3] = table[d];
    }
    for (; i < size; i++)
        output[i] = table[in[i]];
}

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void ec_unary_f32(int32_t fn, float alpha, float beta, const float *input, float *output, int32_t size)
{
    for (int32_t i = 0; i < size; i++) {
        const float x = input[i];
        float y;
        switch (fn) {
        case EC_UNARY_SIGMOID: y = sigmoid(x); break;
        case EC_UNARY_TANH: y = tanhf(x); break;
        case EC_UNARY_HARD_SIGMOID: y = fmaxf(0.0f, fminf(1.0f, alpha * x + beta)); break;
        case EC_UNARY_HARD_SWISH: y = x * fminf(6.0f, fmaxf(0.0f, x + 3.0f)) / 6.0f; break;
        case EC_UNARY_LEAKY_RELU: y = x > 0.0f ? x : alpha * x; break;
        case EC_UNARY_GELU: y = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); break;
        case EC_UNARY_GELU_TANH:
            y = 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
            break;
        case EC_UNARY_ERF: y = erff(x); break;
        case EC_UNARY_SILU: y = x * sigmoid(x); break;
        default: y = x; break;
        }
        output[i] = y;
    }
}
