/*
 * ec_kernels_data.h - data movement kernels: values moved, never changed (any element type).
 */
#ifndef EC_KERNELS_DATA_H
#define EC_KERNELS_DATA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EC_TRANSPOSE_MAX_DIMS 6

/* out[j0][j1]...[jn] = in[...] with out axis k being in axis perm[k]: dims are the input's,
 * strides_out[k] the output's stride (in elements) of input axis k. */
typedef struct {
    int32_t rank;
    int32_t elem_bytes; /* 1, 2 or 4 */
    int32_t dims[EC_TRANSPOSE_MAX_DIMS];        /* input shape */
    int32_t out_strides[EC_TRANSPOSE_MAX_DIMS]; /* output stride (elements) of each input axis */
} ec_transpose_params_t;

/* Transpose a tensor (input and output must not overlap). */
void ec_transpose(const ec_transpose_params_t *p, const void *input, void *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_DATA_H */
