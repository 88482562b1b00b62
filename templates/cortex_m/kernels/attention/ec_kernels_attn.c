/*
 * ec_kernels_attn.c - batch matmul of two activations and layer normalization, float32 (plain C
 * reference kernels; see ec_kernels_attn.h).
 */
#include "ec_kernels_attn.h"

#include <math.h>

#include "ec_requant.h"

/* The element offsets of batch position `t`'s matrices (the odometer over the batch dims). */
static void batch_offsets(const ec_matmul_params_t *p, int32_t t, int32_t *ao, int32_t *bo)
{
    *ao = 0;
    *bo = 0;
    for (int d = EC_MATMUL_BATCH_DIMS - 1; d >= 0; d--) {
        const int32_t i = t % p->batch_dims[d];
        t /= p->batch_dims[d];
        *ao += i * p->a_strides[d];
        *bo += i * p->b_strides[d];
    }
}

void ec_batch_matmul_s8(const ec_matmul_params_t *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    int32_t total = 1;
    for (int d = 0; d < EC_MATMUL_BATCH_DIMS; d++) {
        total *= p->batch_dims[d];
    }
    const int32_t m = p->rows, k = p->inner, n = p->cols;
    int8_t *o = output;
    for (int32_t t = 0; t < total; t++) {
        int32_t ao, bo;
        batch_offsets(p, t, &ao, &bo);
        const int8_t *A = a + ao, *B = b + bo;
        for (int32_t i = 0; i < m; i++) {
            for (int32_t j = 0; j < n; j++) {
                int32_t acc = 0;
                for (int32_t q = 0; q < k; q++) {
                    acc += ((int32_t)A[i * k + q] + p->lhs_offset) * ((int32_t)B[q * n + j] + p->rhs_offset);
                }
                int32_t v = ec_multiply_by_quantized_multiplier(acc, p->multiplier, p->shift) + p->output_offset;
                *o++ = (int8_t)ec_clip_i32(v, p->act_min, p->act_max);
            }
        }
    }
}

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
