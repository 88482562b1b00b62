/*
 * ec_kernels_s4.c - int8 convolution and fully connected layers on packed weights
 * (int4 two per byte, or b-bit codebook indices).  See ec_kernels_s4.h.
 */
#include "ec_kernels_s4.h"

#include <string.h>

static int32_t clamp_s4(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The signed value of a bits-bit two's complement field. */
static int32_t sign_extend(uint32_t v, int32_t bits)
{
    const uint32_t half = 1u << (bits - 1);
    return (int32_t)(v ^ half) - (int32_t)half;
}

static int32_t decode(const ec_packed_weights_t *w, uint32_t index)
{
    return w->codebook != NULL ? w->codebook[index] : sign_extend(index, w->bits);
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
    int32_t i = start;
    const int32_t end = start + n;
    if (w->bits == 4) {
        if (i < end && (i & 1)) {
            *out++ = (int8_t)decode(w, r[i >> 1] >> 4);
            i++;
        }
        for (; i + 1 < end; i += 2) {
            const uint32_t b = r[i >> 1];
            *out++ = (int8_t)decode(w, b & 15u);
            *out++ = (int8_t)decode(w, b >> 4);
        }
        if (i < end)
            *out = (int8_t)decode(w, r[i >> 1] & 15u);
        return;
    }
    for (; i < end; i++)
        *out++ = (int8_t)decode(w, field_at(r, i, w->bits));
}

/* sum over i of (w[i] + w_offset) * (x[i] + x_offset): ec_kernels.c's dot_s8 */
static int32_t dot_s4(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset, int32_t w_offset)
{
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++)
        acc += (w[i] + w_offset) * (x[i] + x_offset);
    return acc;
}

void ec_conv2d_s4(const ec_conv_params_t *p, const ec_packed_weights_t *w, const int8_t *input,
                  const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip, int8_t *wrow)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t in_c = p->in_c;
    const int32_t taps = p->kernel_h * p->kernel_w * in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                ec_unpack_weights(w, oc, 0, taps, wrow); /* this channel's filter, once per output row */
                for (int32_t ox = 0; ox < p->out_w; ox++) {
                    const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                    int32_t kx0, kx1;
                    ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        const int32_t kx_step = p->dilation_w == 1 ? kx1 - kx0 : 1;
                        for (int32_t kx = kx0; kx < kx1; kx += kx_step) {
                            const int32_t ix = in_x0 + kx * p->dilation_w;
                            acc += dot_s4(in_b + (iy * p->in_w + ix) * in_c, wrow + (ky * p->kernel_w + kx) * in_c,
                                          kx_step * in_c, p->input_offset, p->filter_offset);
                        }
                    }
                    if (bias != NULL)
                        acc += bias[oc];
                    const int32_t i = ox * p->out_c + oc;
                    acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
                    acc = clamp_s4(acc, p->act_min, p->act_max);
                    dst[i] = skip != NULL ? ec_add_one_s8(p->residual, acc, skip[out_row + i]) : (int8_t)acc;
                }
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

void ec_fully_connected_s4(const ec_fc_params_t *p, const ec_packed_weights_t *w, const int8_t *input,
                           const int32_t *bias, int8_t *output, int8_t *row)
{
    const int32_t n = p->in_features;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * n;
        int8_t *dst = row != NULL ? row : output + b * p->out_features;
        for (int32_t o = 0; o < p->out_features; o++) {
            const uint8_t *r = w->indices + o * w->row_bytes;
            int32_t acc = 0;
            int32_t i = 0;
            if (w->bits == 4) { /* two weights a byte, decoded inline */
                for (; i + 1 < n; i += 2) {
                    const uint32_t v = r[i >> 1];
                    acc += (decode(w, v & 15u) + p->filter_offset) * (x[i] + p->input_offset);
                    acc += (decode(w, v >> 4) + p->filter_offset) * (x[i + 1] + p->input_offset);
                }
            }
            for (; i < n; i++)
                acc += (decode(w, field_at(r, i, w->bits)) + p->filter_offset) * (x[i] + p->input_offset);
            if (bias != NULL)
                acc += bias[o];
            acc = ec_multiply_by_quantized_multiplier(acc, p->multiplier[o], p->shift[o]) + p->output_offset;
            dst[o] = (int8_t)clamp_s4(acc, p->act_min, p->act_max);
        }
        if (row != NULL)
            memcpy(output + b * p->out_features, row, (size_t)p->out_features);
    }
}
