/*
 * ec_kernels_s4.c - int8 convolution and fully connected layers on packed weights
 * (int4 two per byte, or b-bit codebook indices).  See ec_kernels_s4.h.
 *
 * With `folded` set (the generator's choice when the filter offset is 0) the bias holds
 * bias + input_offset * sum(w) over the whole filter row, so sums multiply raw int8 inputs; a
 * convolution window that crosses the border is first copied with its padded taps set to the
 * input zero point (-input_offset), whose products cancel their share of the folded bias: the
 * same integers as TFLM skipping them.  Without it every product adds the offsets.
 */
#include "ec_kernels_s4.h"

#include <string.h>

#if defined(__GNUC__)
#define EC_S4_INLINE static inline __attribute__((always_inline))
#else
#define EC_S4_INLINE static inline
#endif

EC_S4_INLINE int32_t clamp_s4(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The signed value of a bits-bit two's complement field. */
EC_S4_INLINE int32_t sign_extend(uint32_t v, int32_t bits)
{
    const uint32_t half = 1u << (bits - 1);
    return (int32_t)(v ^ half) - (int32_t)half;
}

/* Index i of a row's bit stream (fields may straddle two bytes; nothing past the field is read). */
static uint32_t field_at(const uint8_t *r, int32_t i, int32_t bits)
{
    const uint32_t bit = (uint32_t)i * (uint32_t)bits;
    const uint32_t sh = bit & 7u;
    uint32_t v = r[bit >> 3];
    if (sh + (uint32_t)bits > 8u)
        v |= (uint32_t)r[(bit >> 3) + 1] << 8;
    return (v >> sh) & ((1u << bits) - 1u);
}

void ec_unpack_weights(const ec_packed_weights_t *w, int32_t row, int32_t start, int32_t n, int8_t *out)
{
    const uint8_t *r = w->indices + row * w->row_bytes;
    const int8_t *cb = w->codebook;
    int32_t i = start;
    const int32_t end = start + n;
    if (w->bits == 4) {
        if (i < end && (i & 1)) {
            const uint32_t v = r[i >> 1] >> 4;
            *out++ = (int8_t)(cb != NULL ? cb[v] : sign_extend(v, 4));
            i++;
        }
        const uint8_t *p = r + (i >> 1);
        const int32_t pairs = (end - i) >> 1;
        if (cb == NULL) {
            for (int32_t k = 0; k < pairs; k++) {
                const int32_t b = (int8_t)p[k];
                *out++ = (int8_t)((int32_t)((uint32_t)b << 28) >> 28);
                *out++ = (int8_t)(b >> 4);
            }
        } else {
            for (int32_t k = 0; k < pairs; k++) {
                const uint32_t b = p[k];
                *out++ = cb[b & 15u];
                *out++ = cb[b >> 4];
            }
        }
        i += 2 * pairs;
        if (i < end) {
            const uint32_t v = r[i >> 1] & 15u;
            *out = (int8_t)(cb != NULL ? cb[v] : sign_extend(v, 4));
        }
        return;
    }
    for (; i < end; i++) {
        const uint32_t v = field_at(r, i, w->bits);
        *out++ = (int8_t)(cb != NULL ? cb[v] : sign_extend(v, w->bits));
    }
}

/* sum of x[i] * w[i], four at a time */
EC_S4_INLINE int32_t dot_raw(const int8_t *x, const int8_t *w, int32_t n, int32_t acc)
{
    int32_t i = 0;
    for (; i + 3 < n; i += 4)
        acc += x[i] * w[i] + x[i + 1] * w[i + 1] + x[i + 2] * w[i + 2] + x[i + 3] * w[i + 3];
    for (; i < n; i++)
        acc += x[i] * w[i];
    return acc;
}

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>

/* A filter row decoded for SMLAD: per 4 taps (w0, w1, w2, w3) the words (w0, w2) and (w1, w3) as
 * int16 halves, which pair with SXTB16 of 4 input bytes (bytes 0 and 2, then 1 and 3). */
static void widen_pairs(const int8_t *w, int32_t taps, uint32_t *out)
{
    for (int32_t i = 0; i + 3 < taps; i += 4) {
        *out++ = (uint16_t)w[i] | ((uint32_t)(uint16_t)w[i + 2] << 16);
        *out++ = (uint16_t)w[i + 1] | ((uint32_t)(uint16_t)w[i + 3] << 16);
    }
}

/* sum of x[i] * w[i] over n (a multiple of 4) raw inputs and widened weight pairs */
EC_S4_INLINE int32_t dot_pairs(const int8_t *x, const uint32_t *w, int32_t n, int32_t acc)
{
    for (int32_t i = 0; i < n; i += 4) {
        uint32_t v;
        memcpy(&v, x + i, 4);
        acc = __smlad(__sxtb16(v), w[0], acc);
        acc = __smlad(__sxtb16((v >> 8) | (v << 24)), w[1], acc); /* bytes 1 and 3 */
        w += 2;
    }
    return acc;
}
#endif

/* sum of (x[i] + x_off) * (w[i] + w_off) */
static int32_t dot_off(const int8_t *x, const int8_t *w, int32_t n, int32_t x_off, int32_t w_off)
{
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++)
        acc += (x[i] + x_off) * (w[i] + w_off);
    return acc;
}

/* One channel's decoded filter: int8 taps, their sum, and (DSP cores) the SMLAD pairs. */
typedef struct {
    const int8_t *w;
    const uint32_t *pairs; /* NULL: no SMLAD path */
    int32_t sum;
} s4_filter_t;

static void decode_filter(const ec_packed_weights_t *w, int32_t oc, int32_t taps, int8_t *wrow, uint32_t *pairs,
                          s4_filter_t *f)
{
    int32_t sum = 0;
#if defined(__ARM_FEATURE_DSP)
    if (pairs != NULL && w->bits == 4 && w->codebook == NULL) { /* int4 rows of whole 4-tap groups: one pass */
        const uint8_t *r = w->indices + oc * w->row_bytes;
        for (int32_t i = 0; i < taps; i += 4, r += 2) {
            const int32_t b0 = (int8_t)r[0], b1 = (int8_t)r[1];
            const int32_t w0 = (int32_t)((uint32_t)b0 << 28) >> 28, w1 = b0 >> 4;
            const int32_t w2 = (int32_t)((uint32_t)b1 << 28) >> 28, w3 = b1 >> 4;
            wrow[i] = (int8_t)w0;
            wrow[i + 1] = (int8_t)w1;
            wrow[i + 2] = (int8_t)w2;
            wrow[i + 3] = (int8_t)w3;
            pairs[i >> 1] = (uint16_t)w0 | ((uint32_t)w2 << 16);
            pairs[(i >> 1) + 1] = (uint16_t)w1 | ((uint32_t)w3 << 16);
            sum += w0 + w1 + w2 + w3;
        }
        f->w = wrow;
        f->sum = sum;
        f->pairs = pairs;
        return;
    }
#endif
    ec_unpack_weights(w, oc, 0, taps, wrow);
    for (int32_t i = 0; i < taps; i++)
        sum += wrow[i];
    f->w = wrow;
    f->sum = sum;
    f->pairs = NULL;
#if defined(__ARM_FEATURE_DSP)
    if (pairs != NULL) {
        widen_pairs(wrow, taps, pairs);
        f->pairs = pairs;
    }
#else
    (void)pairs;
#endif
}

/* Output row oy of channel oc (every ox) into dst (stride out_c). */
static void conv_channel_row(const ec_conv_params_t *p, const ec_packed_weights_t *w, const int8_t *in_b,
                             const s4_filter_t *f, int32_t oc, int32_t oy, int32_t b0, int8_t *dst,
                             const int8_t *skip_row, int8_t *win)
{
    (void)win;
    const int32_t in_c = p->in_c;
    const int32_t kw_c = p->kernel_w * in_c;
    const int32_t in_y0 = oy * p->stride_h - p->pad_top;
    int32_t ky0, ky1;
    ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
    const int rows_inside = ky0 == 0 && ky1 == p->kernel_h;
    const int32_t zero_point = -p->input_offset;
    for (int32_t ox = 0; ox < p->out_w; ox++) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_left;
        int32_t acc = b0;
        if (w->folded && rows_inside && in_x0 >= 0 && in_x0 + p->kernel_w <= p->in_w) {
            const int8_t *xs = in_b + (in_y0 * p->in_w + in_x0) * in_c;
            for (int32_t ky = 0; ky < p->kernel_h; ky++, xs += p->in_w * in_c) {
#if defined(__ARM_FEATURE_DSP)
                if (f->pairs != NULL) {
                    acc = dot_pairs(xs, f->pairs + ky * (kw_c >> 1), kw_c, acc);
                    continue;
                }
#endif
                acc = dot_raw(xs, f->w + ky * kw_c, kw_c, acc);
            }
#if defined(__ARM_FEATURE_DSP)
        } else if (f->pairs != NULL) { /* border: the window copied with the zero point in its padded taps */
            int32_t kx0, kx1;
            ec_tap_range(in_x0, 1, p->kernel_w, p->in_w, &kx0, &kx1);
            memset(win, (int8_t)zero_point, (size_t)(p->kernel_h * kw_c));
            for (int32_t ky = ky0; ky < ky1; ky++)
                memcpy(win + ky * kw_c + kx0 * in_c, in_b + ((in_y0 + ky) * p->in_w + in_x0 + kx0) * in_c,
                       (size_t)((kx1 - kx0) * in_c));
            acc = dot_pairs(win, f->pairs, p->kernel_h * kw_c, acc);
#endif
        } else if (w->folded) { /* border: the taps inside, and the zero point times the weights outside */
            int32_t kx0, kx1;
            ec_tap_range(in_x0, 1, p->kernel_w, p->in_w, &kx0, &kx1);
            int32_t inside = 0;
            for (int32_t ky = ky0; ky < ky1; ky++) {
                const int8_t *xs = in_b + ((in_y0 + ky) * p->in_w + in_x0 + kx0) * in_c;
                const int8_t *ws = f->w + ky * kw_c + kx0 * in_c;
                const int32_t n = (kx1 - kx0) * in_c;
                for (int32_t i = 0; i < n; i++) {
                    acc += xs[i] * ws[i];
                    inside += ws[i];
                }
            }
            acc += zero_point * (f->sum - inside);
        } else {
            int32_t kx0, kx1;
            ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
            for (int32_t ky = ky0; ky < ky1; ky++) {
                const int32_t iy = in_y0 + ky * p->dilation_h;
                const int32_t kx_step = p->dilation_w == 1 ? kx1 - kx0 : 1;
                for (int32_t kx = kx0; kx < kx1; kx += kx_step) {
                    const int32_t ix = in_x0 + kx * p->dilation_w;
                    acc += dot_off(in_b + (iy * p->in_w + ix) * in_c, f->w + (ky * p->kernel_w + kx) * in_c,
                                   kx_step * in_c, p->input_offset, p->filter_offset);
                }
            }
        }
        const int32_t i = ox * p->out_c + oc;
        acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
        acc = clamp_s4(acc, p->act_min, p->act_max);
        dst[i] = skip_row != NULL ? ec_add_one_s8(p->residual, acc, skip_row[i]) : (int8_t)acc;
    }
}

void ec_conv2d_s4(const ec_conv_params_t *p, const ec_packed_weights_t *w, const int8_t *input,
                  const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip, int8_t *work)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t in_c = p->in_c;
    const int32_t taps = p->kernel_h * p->kernel_w * in_c;
    const int32_t in_size = p->in_h * p->in_w * in_c;
    /* work: [SMLAD pairs: 2 * taps bytes][decoded filter: taps][border window: taps] */
    int8_t *wrow = work + 2 * taps;
    int8_t *win = wrow + taps;
    uint32_t *pairs = NULL;
#if defined(__ARM_FEATURE_DSP)
    if (w->folded && ((p->kernel_w * in_c) & 3) == 0)
        pairs = (uint32_t *)(void *)work;
#endif
    s4_filter_t f;
    if (w->folded && (int32_t)(p->out_c + 1) * taps <= w->work_bytes && p->dilation_h == 1 && p->dilation_w == 1) {
        /* every channel's filter fits the buffer (small first layers): decoded once, each window read once */
        int8_t *all = work;
        int8_t *window = work + p->out_c * taps;
        const int32_t zero_point = -p->input_offset;
        for (int32_t oc = 0; oc < p->out_c; oc++)
            ec_unpack_weights(w, oc, 0, taps, all + oc * taps);
        for (int32_t b = 0; b < p->batches; b++)
            for (int32_t oy = 0; oy < p->out_h; oy++) {
                const int32_t out_row = (b * p->out_h + oy) * row_len;
                int8_t *dst = row != NULL ? row : output + out_row;
                const int32_t in_y0 = oy * p->stride_h - p->pad_top;
                int32_t ky0, ky1;
                ec_tap_range(in_y0, 1, p->kernel_h, p->in_h, &ky0, &ky1);
                for (int32_t ox = 0; ox < p->out_w; ox++) {
                    const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                    int32_t kx0, kx1;
                    ec_tap_range(in_x0, 1, p->kernel_w, p->in_w, &kx0, &kx1);
                    const int32_t kw_c = p->kernel_w * in_c;
                    memset(window, (int8_t)zero_point, (size_t)taps);
                    for (int32_t ky = ky0; ky < ky1; ky++)
                        memcpy(window + ky * kw_c + kx0 * in_c,
                               input + b * in_size + ((in_y0 + ky) * p->in_w + in_x0 + kx0) * in_c,
                               (size_t)((kx1 - kx0) * in_c));
                    for (int32_t oc = 0; oc < p->out_c; oc++) {
                        int32_t acc = dot_raw(window, all + oc * taps, taps, bias != NULL ? bias[oc] : 0);
                        const int32_t i = ox * p->out_c + oc;
                        acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) +
                              p->output_offset;
                        acc = clamp_s4(acc, p->act_min, p->act_max);
                        dst[i] = skip != NULL ? ec_add_one_s8(p->residual, acc, skip[out_row + i]) : (int8_t)acc;
                    }
                }
                if (row != NULL)
                    memcpy(output + out_row, row, (size_t)row_len);
            }
        return;
    }
    if (row == NULL) { /* output apart from the input: each channel decoded once, all its rows */
        for (int32_t oc = 0; oc < p->out_c; oc++) {
            decode_filter(w, oc, taps, wrow, pairs, &f);
            const int32_t b0 = bias != NULL ? bias[oc] : 0;
            for (int32_t b = 0; b < p->batches; b++)
                for (int32_t oy = 0; oy < p->out_h; oy++) {
                    const int32_t out_row = (b * p->out_h + oy) * row_len;
                    conv_channel_row(p, w, input + b * in_size, &f, oc, oy, b0, output + out_row,
                                     skip != NULL ? skip + out_row : NULL, win);
                }
        }
        return;
    }
    /* in place: row by row through the scratch row, each channel decoded once per row */
    for (int32_t b = 0; b < p->batches; b++)
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                decode_filter(w, oc, taps, wrow, pairs, &f);
                conv_channel_row(p, w, input + b * in_size, &f, oc, oy, bias != NULL ? bias[oc] : 0, row,
                                 skip != NULL ? skip + out_row : NULL, win);
            }
            memcpy(output + out_row, row, (size_t)row_len);
        }
}

/* One output of a folded int4 row without a codebook: two weights a byte, inputs raw. */
static int32_t fc_row_int4(const uint8_t *r, const int8_t *x, int32_t n, int32_t acc)
{
    int32_t i = 0;
    for (; i + 3 < n; i += 4) {
        const int32_t b0 = (int8_t)r[i >> 1];
        const int32_t b1 = (int8_t)r[(i >> 1) + 1];
        acc += ((int32_t)((uint32_t)b0 << 28) >> 28) * x[i] + (b0 >> 4) * x[i + 1]
             + ((int32_t)((uint32_t)b1 << 28) >> 28) * x[i + 2] + (b1 >> 4) * x[i + 3];
    }
    for (; i < n; i++) {
        const int32_t b = (int8_t)r[i >> 1];
        acc += ((i & 1) ? (b >> 4) : ((int32_t)((uint32_t)b << 28) >> 28)) * x[i];
    }
    return acc;
}

/* The same through a 16-entry codebook. */
static int32_t fc_row_cb4(const uint8_t *r, const int8_t *cb, const int8_t *x, int32_t n, int32_t acc)
{
    int32_t i = 0;
    for (; i + 1 < n; i += 2) {
        const uint32_t b = r[i >> 1];
        acc += cb[b & 15u] * x[i] + cb[b >> 4] * x[i + 1];
    }
    if (i < n)
        acc += cb[r[i >> 1] & 15u] * x[i];
    return acc;
}

void ec_fully_connected_s4(const ec_fc_params_t *p, const ec_packed_weights_t *w, const int8_t *input,
                           const int32_t *bias, int8_t *output, int8_t *row)
{
    const int32_t n = p->in_features;
    const int8_t *cb = w->codebook;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * n;
        int8_t *dst = row != NULL ? row : output + b * p->out_features;
        for (int32_t o = 0; o < p->out_features; o++) {
            const uint8_t *r = w->indices + o * w->row_bytes;
            int32_t acc = bias != NULL ? bias[o] : 0;
            if (w->folded && w->bits == 4) {
                acc = cb == NULL ? fc_row_int4(r, x, n, acc) : fc_row_cb4(r, cb, x, n, acc);
            } else {
                for (int32_t i = 0; i < n; i++) {
                    const uint32_t v = field_at(r, i, w->bits);
                    const int32_t wv = cb != NULL ? cb[v] : sign_extend(v, w->bits);
                    acc += w->folded ? wv * x[i] : (wv + p->filter_offset) * (x[i] + p->input_offset);
                }
            }
            acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[o], p->shift[o]) + p->output_offset;
            dst[o] = (int8_t)clamp_s4(acc, p->act_min, p->act_max);
        }
        if (row != NULL)
            memcpy(output + b * p->out_features, row, (size_t)p->out_features);
    }
}
