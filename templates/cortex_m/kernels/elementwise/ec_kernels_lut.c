/*
 * ec_kernels_lut.c - unary activations (see ec_kernels_lut.h).
 */
#include "ec_kernels_lut.h"

#include <math.h>

void ec_lut_s8(const int8_t *table, const int8_t *input, int8_t *output, int32_t size)
{
    const uint8_t *in = (const uint8_t *)input;
    const uint8_t *end4 = in + (size & ~3), *end = in + size;
    while (in != end4) { /* four loads before four stores: in place is safe */
        const uint8_t a = in[0], b = in[1], c = in[2], d = in[3];
        in += 4;
        output[0] = table[a];
        output[1] = table[b];
        output[2] = table[c];
        output[3] = table[d];
        output += 4;
    }
    while (in != end)
        *output++ = table[*in++];
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
