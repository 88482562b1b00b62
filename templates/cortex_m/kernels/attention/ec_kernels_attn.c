/*
 * ec_kernels_attn.c - batch matmul of two activations and layer normalization, float32 (plain C
 * reference kernels; see ec_kernels_attn.h).
 */
#include "ec_kernels_attn.h"

#include <math.h>

void ec_batch_matmul_f32(const ec_matmul_params_t *p, const float *a, const float *b, float *output)
{
    int32_t idx[EC_MATMUL_BATCH_DIMS] = {0};
    int32_t total = 1;
    for (int d = 0; d < EC_MATMUL_BATCH_DIMS; d++) {
        total *= p->batch_dims[d];
    }
    const int32_t m = p->rows, k = p->inner, n = p->cols;
    float *o = output;
    for (int32_t t = 0; t < total; t++) {
        int32_t ao = 0, bo = 0;
        for (int d = 0; d < EC_MATMUL_BATCH_DIMS; d++) {
            ao += idx[d] * p->a_strides[d];
            bo += idx[d] * p->b_strides[d];
        }
        const float *A = a + ao, *B = b + bo;
        for (int32_t i = 0; i < m; i++) {
            const float *arow = A + i * k;
            for (int32_t j = 0; j < n; j++) {
                float acc = 0.0f;
                const float *bcol = B + j;
                for (int32_t q = 0; q < k; q++) {
                    acc += arow[q] * bcol[q * n];
                }
                *o++ = acc;
            }
        }
        for (int d = EC_MATMUL_BATCH_DIMS - 1; d >= 0; d--) {  /* next batch position */
            if (++idx[d] < p->batch_dims[d]) {
                break;
            }
            idx[d] = 0;
        }
    }
}

void ec_layer_norm_f32(int32_t rows, int32_t count, float epsilon, const float *scale, const float *bias,
                       const float *input, float *output)
{
    for (int32_t r = 0; r < rows; r++) {
        const float *x = input + r * count;
        float *y = output + r * count;
        float sum = 0.0f;
        for (int32_t i = 0; i < count; i++) {
            sum += x[i];
        }
        const float mean = sum / (float)count;
        float ss = 0.0f;
        for (int32_t i = 0; i < count; i++) {
            const float d = x[i] - mean;
            ss += d * d;
        }
        const float inv = 1.0f / sqrtf(ss / (float)count + epsilon);
        for (int32_t i = 0; i < count; i++) {
            const float v = (x[i] - mean) * inv * scale[i];
            y[i] = bias != NULL ? v + bias[i] : v;
        }
    }
}
