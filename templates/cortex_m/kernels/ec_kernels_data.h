/*
 * ec_kernels_data.h - data movement kernels: values moved, never changed (any element type).
 */
#ifndef EC_KERNELS_DATA_H
#define EC_KERNELS_DATA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EC_DATA_MAX_DIMS 6

/* A strided copy: the output (dims, written in order) reads input element
 * offset + sum_k j_k * in_strides[k]; a stride may be negative (a reversed slice) or 0 (a
 * broadcast axis).  Slices, broadcasts, transposes (the strides permuted) and the parts of a split. */
typedef struct {
    int32_t rank;
    int32_t elem_bytes; /* 1, 2 or 4 */
    int32_t offset;     /* input element of output element 0 */
    int32_t dims[EC_DATA_MAX_DIMS];       /* output shape */
    int32_t in_strides[EC_DATA_MAX_DIMS]; /* input stride (elements) of each output axis */
} ec_slice_params_t;

/* Input and output must not overlap. */
void ec_strided_copy(const ec_slice_params_t *p, const void *input, void *output);

#define EC_PAD_CONSTANT 0
#define EC_PAD_EDGE 1
#define EC_PAD_REFLECT 2

/* Pad: output index o of axis k reads input index o - before[k]; outside the input the constant
 * (its bytes in value, little-endian), the nearest edge element, or its mirror image across the
 * edge (the edge itself not repeated; before and after < the input size). */
typedef struct {
    int32_t rank;
    int32_t elem_bytes; /* 1, 2 or 4 */
    int32_t mode;       /* EC_PAD_CONSTANT, EC_PAD_EDGE, EC_PAD_REFLECT */
    uint32_t value;     /* the constant's bits (int8 / int16 / float) */
    int32_t in_dims[EC_DATA_MAX_DIMS];
    int32_t out_dims[EC_DATA_MAX_DIMS];
    int32_t before[EC_DATA_MAX_DIMS];
} ec_pad_params_t;

/* Input and output must not overlap. */
void ec_pad(const ec_pad_params_t *p, const void *input, void *output);

/* Gather: for each of outer blocks, the slices indices[0..n) (each inner_bytes long) of the
 * block's axis_size slices, in order. */
typedef struct {
    int32_t outer;
    int32_t axis_size;
    int32_t n_indices;
    int32_t inner_bytes;
    const int32_t *indices; /* in [0, axis_size) */
} ec_gather_params_t;

/* Input and output must not overlap. */
void ec_gather(const ec_gather_params_t *p, const void *input, void *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_DATA_H */
