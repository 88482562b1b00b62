/*
 * ec_kernels_data.c - data movement kernels (see ec_kernels_data.h).
 */
#include "ec_kernels_data.h"

#include <stddef.h>
#include <string.h>

/* ---- strided copy (slice, broadcast, split) ------------------------------------------------ */

/* count elements of eb bytes from src (stride s elements) to dst (contiguous). */
static void copy_strided(uint8_t *dst, const uint8_t *src, int32_t count, int32_t s, int32_t eb)
{
    if (s == 1) {
        memcpy(dst, src, (size_t)count * (size_t)eb);
    } else if (eb == 1) {
        const int8_t *a = (const int8_t *)src;
        int8_t *d = (int8_t *)dst;
        for (int32_t i = 0; i < count; i++)
            d[i] = a[i * s];
    } else if (eb == 2) {
        const int16_t *a = (const int16_t *)(const void *)src;
        int16_t *d = (int16_t *)(void *)dst;
        for (int32_t i = 0; i < count; i++)
            d[i] = a[i * s];
    } else {
        const int32_t *a = (const int32_t *)(const void *)src;
        int32_t *d = (int32_t *)(void *)dst;
        for (int32_t i = 0; i < count; i++)
            d[i] = a[i * s];
    }
}

/* Writes the output row by row (its innermost axis); an odometer over the outer axes keeps the
 * input offset of the row (one add per row, a subtraction when an axis wraps). */
void ec_strided_copy(const ec_slice_params_t *p, const void *input, void *output)
{
    const int32_t last = p->rank - 1, eb = p->elem_bytes;
    const int32_t n = p->dims[last], s = p->in_strides[last];
    const uint8_t *in = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    int32_t idx[EC_DATA_MAX_DIMS] = {0};
    int32_t outer = 1;
    for (int32_t k = 0; k < last; k++)
        outer *= p->dims[k];
    int32_t src = p->offset;
    for (int32_t o = 0; o < outer; o++) {
        copy_strided(dst, in + (ptrdiff_t)src * eb, n, s, eb);
        dst += (size_t)n * (size_t)eb;
        for (int32_t k = last - 1; k >= 0; k--) {
            idx[k]++;
            src += p->in_strides[k];
            if (idx[k] < p->dims[k])
                break;
            src -= idx[k] * p->in_strides[k];
            idx[k] = 0;
        }
    }
}

/* ---- pad ------------------------------------------------------------------------------------ */

/* The input index output index o of an axis reads, or -1 for the constant. */
static int32_t pad_source(int32_t o, int32_t before, int32_t n, int32_t mode)
{
    const int32_t i = o - before;
    if (i >= 0 && i < n)
        return i;
    if (mode == EC_PAD_CONSTANT)
        return -1;
    if (mode == EC_PAD_EDGE)
        return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

static void fill_value(uint8_t *d, int32_t count, int32_t eb, uint32_t v)
{
    if (eb == 1) {
        memset(d, (int)(v & 0xFFu), (size_t)count);
    } else if (eb == 2) {
        const uint16_t h = (uint16_t)v;
        for (int32_t i = 0; i < count; i++)
            memcpy(d + 2 * i, &h, 2);
    } else {
        for (int32_t i = 0; i < count; i++)
            memcpy(d + 4 * i, &v, 4);
    }
}

/* One output row of the innermost axis from input row src: the constant or mapped elements
 * before and after, the input row itself copied in one piece. */
static void pad_row(const ec_pad_params_t *p, uint8_t *d, const uint8_t *src)
{
    const int32_t last = p->rank - 1, eb = p->elem_bytes;
    const int32_t n = p->in_dims[last], m = p->out_dims[last], b = p->before[last];
    for (int32_t j = 0; j < m; j++) {
        if (j == b) {
            memcpy(d + (size_t)j * (size_t)eb, src, (size_t)n * (size_t)eb);
            j += n - 1;
            continue;
        }
        const int32_t i = pad_source(j, b, n, p->mode);
        if (i < 0)
            fill_value(d + (size_t)j * (size_t)eb, 1, eb, p->value);
        else
            memcpy(d + (size_t)j * (size_t)eb, src + (size_t)i * (size_t)eb, (size_t)eb);
    }
}

void ec_pad(const ec_pad_params_t *p, const void *input, void *output)
{
    const int32_t last = p->rank - 1, eb = p->elem_bytes;
    const int32_t m = p->out_dims[last];
    const uint8_t *in = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    int32_t idx[EC_DATA_MAX_DIMS] = {0};
    int32_t in_stride[EC_DATA_MAX_DIMS];
    int32_t outer = 1, st = 1;
    for (int32_t k = last; k >= 0; k--) {
        in_stride[k] = st;
        st *= p->in_dims[k];
    }
    for (int32_t k = 0; k < last; k++)
        outer *= p->out_dims[k];
    for (int32_t o = 0; o < outer; o++) {
        int32_t row = 0;
        for (int32_t k = 0; k < last && row >= 0; k++) {
            const int32_t i = pad_source(idx[k], p->before[k], p->in_dims[k], p->mode);
            row = i < 0 ? -1 : row + i * in_stride[k];
        }
        if (row < 0)
            fill_value(dst, m, eb, p->value);
        else
            pad_row(p, dst, in + (size_t)row * (size_t)eb);
        dst += (size_t)m * (size_t)eb;
        for (int32_t k = last - 1; k >= 0; k--) {
            if (++idx[k] < p->out_dims[k])
                break;
            idx[k] = 0;
        }
    }
}

/* ---- gather --------------------------------------------------------------------------------- */

void ec_gather(const ec_gather_params_t *p, const void *input, void *output)
{
    const size_t inner = (size_t)p->inner_bytes;
    const uint8_t *in = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    for (int32_t o = 0; o < p->outer; o++) {
        const uint8_t *block = in + (size_t)o * (size_t)p->axis_size * inner;
        for (int32_t j = 0; j < p->n_indices; j++) {
            memcpy(dst, block + (size_t)p->indices[j] * inner, inner);
            dst += inner;
        }
    }
}
