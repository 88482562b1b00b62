/*
 * ec_reference.h - the pieces the reference kernel files share: the conv epilogue, the dot products
 * (static: in a bundle the reference kernels are one translation unit, ec_kernels.c, so one copy of
 * each), and the pooling window.
 */
#ifndef EC_REFERENCE_H
#define EC_REFERENCE_H

#include "ec_kernels.h"
#include "ec_requant.h"

/* The int8 conv epilogue: requantize one accumulator, clamp, then the fused residual add. */
static EC_UNUSED int8_t conv_out_s8(const ec_conv_params_t *p, int32_t acc, int32_t oc, const int8_t *skip)
{
    return ec_conv_out_elem_s8(p, acc, oc, skip, EC_SMALL);
}

static EC_UNUSED float conv_out_f32(const ec_conv_params_t *p, float acc, const float *skip)
{
    acc = ec_clip_f32(acc, p->act_min_f, p->act_max_f);
    if (skip != NULL)
        return ec_clip_f32(acc + *skip, p->residual->act_min_f, p->residual->act_max_f);
    return acc;
}

/* Keep the innermost loops in small leaf functions: inlined into the deep loop nests they would
 * spill their pointers to the stack on every multiply. */

/* sum over i of (w[i] + w_offset) * (x[i] + x_offset) */
static EC_NOINLINE EC_UNUSED int32_t dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset,
                                            int32_t w_offset)
{
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++)
        acc += (w[i] + w_offset) * (x[i] + x_offset);
    return acc;
}

static EC_NOINLINE EC_UNUSED float dot_f32(const float *x, const float *w, int32_t n, float acc)
{
    for (int32_t i = 0; i < n; i++)
        acc += x[i] * w[i];
    return acc;
}

/* The input rows (or columns) [lo, hi) of a pooling window whose first tap is `origin`, clipped to
 * [0, size) (the padding is not counted) */
EC_INLINE void ec_pool_range(int32_t origin, int32_t kernel, int32_t size, int32_t *lo, int32_t *hi)
{
    *lo = origin < 0 ? 0 : origin;
    *hi = origin + kernel < size ? origin + kernel : size;
}

#endif /* EC_REFERENCE_H */
