/*
 * ec_kernels_data.c - data movement kernels (see ec_kernels_data.h).
 */
#include "ec_kernels_data.h"

#include <string.h>

/* Walks the input in memory order with an odometer over its axes, writing each element at the
 * output offset the odometer's output strides give (one add per element on the innermost axis). */
void ec_transpose(const ec_transpose_params_t *p, const void *input, void *output)
{
    int32_t idx[EC_TRANSPOSE_MAX_DIMS] = {0};
    const int32_t r = p->rank, last = r - 1;
    const int32_t n_last = p->dims[last], s_last = p->out_strides[last];
    int32_t outer = 1;
    for (int32_t k = 0; k < last; k++)
        outer *= p->dims[k];
    int32_t base = 0; /* output offset of idx[0..last-1] */
    for (int32_t o = 0; o < outer; o++) {
        if (p->elem_bytes == 1) {
            const int8_t *s = (const int8_t *)input + (int32_t)o * n_last;
            int8_t *d = (int8_t *)output + base;
            for (int32_t i = 0; i < n_last; i++)
                d[i * s_last] = s[i];
        } else if (p->elem_bytes == 2) {
            const int16_t *s = (const int16_t *)input + (int32_t)o * n_last;
            int16_t *d = (int16_t *)output + base;
            for (int32_t i = 0; i < n_last; i++)
                d[i * s_last] = s[i];
        } else {
            const int32_t *s = (const int32_t *)input + (int32_t)o * n_last;
            int32_t *d = (int32_t *)output + base;
            for (int32_t i = 0; i < n_last; i++)
                d[i * s_last] = s[i];
        }
        for (int32_t k = last - 1; k >= 0; k--) { /* next index of the outer axes */
            idx[k]++;
            base += p->out_strides[k];
            if (idx[k] < p->dims[k])
                break;
            base -= idx[k] * p->out_strides[k];
            idx[k] = 0;
        }
    }
}
