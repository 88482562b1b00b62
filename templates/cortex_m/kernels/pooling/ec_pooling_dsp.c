/*
 * ec_pooling_dsp.c - int8 pooling for cores with the DSP extension (Cortex-M4/M7).
 */
#include "ec_kernels_dsp.h"
#include "ec_requant.h"
#include "ec_simd.h"

#include <string.h>

/* TFLM's int8 average: the sum rounded half away from zero, divided, clamped. */
static int8_t avg_s8(const ec_pool_params_t *p, int32_t sum, int32_t count)
{
    const int32_t a = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
    return (int8_t)(a < p->act_min ? p->act_min : (a > p->act_max ? p->act_max : a));
}

void ec_global_avg_pool2d_s8_dsp(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const int32_t c_n = p->channels, n = p->in_h * p->in_w;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * n * c_n;
        int8_t *dst = row != NULL ? row : output + b * c_n;
        int32_t c = 0;
        for (; c + 4 <= c_n; c += 4) {
            /* channels c and c + 2 in `even`, c + 1 and c + 3 in `odd`: 16-bit sums of at most
             * 256 int8 values, exact */
            uint32_t even = 0, odd = 0;
            const int8_t *x = in_b + c;
            for (int32_t i = 0; i < n; i++, x += c_n) {
                const uint32_t v = ec_load32(x);
                even = EC_SXTAB16(even, v);
                odd = EC_SXTAB16_ROR8(odd, v);
            }
            dst[c] = avg_s8(p, (int16_t)(even & 0xffffu), n);
            dst[c + 1] = avg_s8(p, (int16_t)(odd & 0xffffu), n);
            dst[c + 2] = avg_s8(p, (int16_t)(even >> 16), n);
            dst[c + 3] = avg_s8(p, (int16_t)(odd >> 16), n);
        }
        for (; c < c_n; c++) {
            int32_t sum = 0;
            for (int32_t i = 0; i < n; i++)
                sum += in_b[i * c_n + c];
            dst[c] = avg_s8(p, sum, n);
        }
        if (row != NULL)
            memcpy(output + b * c_n, row, (size_t)c_n);
    }
}
