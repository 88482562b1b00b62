/*
 * ec_conv2d_dsp.c - int8 convolution for cores with the DSP extension (Cortex-M4/M7).
 *
 * See ec_kernels_dsp.h for the contract (folded bias, filter_offset 0).
 *
 * The work is dot products of int8 runs: four bytes of input and four bytes
 * of weights are loaded as 32-bit words; SXTB16 sign-extends bytes 0 and 2
 * (and, after a rotation by 8, bytes 1 and 3) into two 16-bit halves, and
 * SMLAD multiplies both halves and adds them to an accumulator.  Input and
 * weights are split the same way, so the pairs line up without re-packing.
 * Two pixels times two output channels share each load (dot_2x2).
 */
#include "ec_kernels_dsp.h"
#include "ec_requant.h"
#include "ec_simd.h"

#include <string.h>

/* acc[0] += xa.w0, acc[1] += xa.w1, acc[2] += xb.w0, acc[3] += xb.w1 over `rows` runs of n bytes,
 * the input runs x_step apart, the weight runs n apart (a kernel window, row by row) */
static EC_HOT void dot_2x2(const int8_t *xa, const int8_t *xb, const int8_t *w0, const int8_t *w1, int32_t n,
                           int32_t rows, int32_t x_step, int32_t *acc)
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const int32_t x_skip = x_step - n;
    for (; rows > 0; rows--) {
    for (int32_t i = n >> 2; i > 0; i--) {
        const uint32_t x = ec_load32(xa);
        const uint32_t y = ec_load32(xb);
        const uint32_t xe = EC_SXTB16(x), xo = EC_SXTB16_ROR8(x);
        const uint32_t ye = EC_SXTB16(y), yo = EC_SXTB16_ROR8(y);
        uint32_t w = ec_load32(w0);
        uint32_t we = EC_SXTB16(w), wo = EC_SXTB16_ROR8(w);
        a00 = EC_SMLAD(xe, we, a00);
        a00 = EC_SMLAD(xo, wo, a00);
        a10 = EC_SMLAD(ye, we, a10);
        a10 = EC_SMLAD(yo, wo, a10);
        w = ec_load32(w1);
        we = EC_SXTB16(w);
        wo = EC_SXTB16_ROR8(w);
        a01 = EC_SMLAD(xe, we, a01);
        a01 = EC_SMLAD(xo, wo, a01);
        a11 = EC_SMLAD(ye, we, a11);
        a11 = EC_SMLAD(yo, wo, a11);
        xa += 4;
        xb += 4;
        w0 += 4;
        w1 += 4;
    }
    for (int32_t i = n & 3; i > 0; i--) {
        const int32_t x = *xa++, y = *xb++, u = *w0++, v = *w1++;
        a00 += x * u;
        a01 += x * v;
        a10 += y * u;
        a11 += y * v;
    }
    xa += x_skip;
    xb += x_skip;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* acc[0] += x.w0, acc[1] += x.w1 over `rows` runs of n bytes, the input runs x_step apart and
 * the weight runs w_step apart */
static EC_HOT void dot_1x2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t rows,
                           int32_t x_step, int32_t w_step, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    const int32_t x_skip = x_step - n, w_skip = w_step - n;
    for (; rows > 0; rows--) {
    for (int32_t i = n >> 2; i > 0; i--) {
        const uint32_t v = ec_load32(x);
        const uint32_t xe = EC_SXTB16(v), xo = EC_SXTB16_ROR8(v);
        uint32_t w = ec_load32(w0);
        a0 = EC_SMLAD(xe, EC_SXTB16(w), a0);
        a0 = EC_SMLAD(xo, EC_SXTB16_ROR8(w), a0);
        w = ec_load32(w1);
        a1 = EC_SMLAD(xe, EC_SXTB16(w), a1);
        a1 = EC_SMLAD(xo, EC_SXTB16_ROR8(w), a1);
        x += 4;
        w0 += 4;
        w1 += 4;
    }
    for (int32_t i = n & 3; i > 0; i--) {
        const int32_t v = *x++;
        a0 += v * *w0++;
        a1 += v * *w1++;
    }
    x += x_skip;
    w0 += w_skip;
    w1 += w_skip;
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* dot_1x2 with the input offset added to the sign-extended inputs (SADD16): the exact sum of
 * w * (x + offset) over a clipped window, for pixels whose window reaches into the padding */
static EC_HOT void dot_1x2_off(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t rows,
                               int32_t x_step, int32_t w_step, int32_t off, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    const int32_t x_skip = x_step - n, w_skip = w_step - n;
    const uint32_t off2 = ((uint32_t)off & 0xffffu) | ((uint32_t)off << 16);
    for (; rows > 0; rows--) {
        for (int32_t i = n >> 2; i > 0; i--) {
            const uint32_t v = ec_load32(x);
            const uint32_t xe = EC_SADD16(EC_SXTB16(v), off2), xo = EC_SADD16(EC_SXTB16_ROR8(v), off2);
            uint32_t w = ec_load32(w0);
            a0 = EC_SMLAD(xe, EC_SXTB16(w), a0);
            a0 = EC_SMLAD(xo, EC_SXTB16_ROR8(w), a0);
            w = ec_load32(w1);
            a1 = EC_SMLAD(xe, EC_SXTB16(w), a1);
            a1 = EC_SMLAD(xo, EC_SXTB16_ROR8(w), a1);
            x += 4;
            w0 += 4;
            w1 += 4;
        }
        for (int32_t i = n & 3; i > 0; i--) {
            const int32_t v = *x++ + off;
            a0 += v * *w0++;
            a1 += v * *w1++;
        }
        x += x_skip;
        w0 += w_skip;
        w1 += w_skip;
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* sum of n weights (the padding correction) */
static int32_t wsum(const int8_t *w, int32_t n)
{
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++)
        s += w[i];
    return s;
}

/* ---- convolution ------------------------------------------------------------ */

#define EC_BIAS_CACHE 64

/* bias[oc] - input_offset * sum(filter[oc]): the layer's own bias before the generator folded it */
static int32_t unfold_bias(const ec_conv_params_t *p, const int8_t *filter, const int32_t *bias, int32_t oc)
{
    const int32_t k_size = p->kernel_h * p->kernel_w * p->in_c;
    return (int32_t)((uint32_t)bias[oc] - (uint32_t)(wsum(filter + oc * k_size, k_size) * p->input_offset));
}

/* One output pixel, channels oc and oc1 (oc1 == oc for a last odd channel), exactly:
 * the valid taps through dot_1x2, the padded taps taken back out of the folded bias. */
static void conv_pixel(const ec_conv_params_t *p, const int8_t *in_b, const int8_t *filter, int32_t in_y0,
                       int32_t in_x0, int32_t oc, int32_t oc1, int32_t *acc)
{
    const int32_t in_c = p->in_c;
    const int32_t k_size = p->kernel_h * p->kernel_w * in_c;
    const int8_t *w0 = filter + oc * k_size;
    const int8_t *w1 = filter + oc1 * k_size;
    int32_t pad0 = 0, pad1 = 0; /* sums of the weights of padded taps */
    for (int32_t ky = 0; ky < p->kernel_h; ky++) {
        const int32_t iy = in_y0 + ky * p->dilation_h;
        const int32_t wrow = ky * p->kernel_w * in_c;
        if (iy < 0 || iy >= p->in_h) {
            pad0 += wsum(w0 + wrow, p->kernel_w * in_c);
            pad1 += wsum(w1 + wrow, p->kernel_w * in_c);
            continue;
        }
        int32_t kx = 0;
        while (kx < p->kernel_w) {
            const int32_t ix = in_x0 + kx * p->dilation_w;
            int32_t run = 1;
            if (ix < 0 || ix >= p->in_w) {
                pad0 += wsum(w0 + wrow + kx * in_c, in_c);
                pad1 += wsum(w1 + wrow + kx * in_c, in_c);
            } else {
                if (p->dilation_w == 1) /* contiguous valid taps */
                    while (kx + run < p->kernel_w && ix + run < p->in_w)
                        run++;
                dot_1x2(in_b + (iy * p->in_w + ix) * in_c, w0 + wrow + kx * in_c, w1 + wrow + kx * in_c,
                        run * in_c, 1, 0, 0, acc);
            }
            kx += run;
        }
    }
    acc[0] -= pad0 * p->input_offset;
    acc[1] -= pad1 * p->input_offset;
}

/* The kernel window of the pixel whose first tap is input (in_y0, in_x0), copied to `win` (kernel_h
 * x kernel_w x in_c bytes, weights' order) with the padded taps set to the input zero point
 * (-input_offset): with the folded bias, a padded tap then adds zp * w = -input_offset * w, which
 * takes its own input_offset * w back out of the folded bias, exactly as TFLM skips it. */
static void copy_window(const ec_conv_params_t *p, const int8_t *in_b, int32_t in_y0, int32_t in_x0, int8_t *win)
{
    const int32_t in_c = p->in_c;
    const int32_t run = p->kernel_w * in_c;
    const int zp = (int8_t)(-p->input_offset);
    int32_t kx0, kx1;
    ec_tap_range(in_x0, 1, p->kernel_w, p->in_w, &kx0, &kx1);
    for (int32_t ky = 0; ky < p->kernel_h; ky++) {
        const int32_t iy = in_y0 + ky;
        int8_t *d = win + ky * run;
        if (iy < 0 || iy >= p->in_h || kx1 <= kx0) {
            memset(d, zp, (size_t)run);
            continue;
        }
        memset(d, zp, (size_t)(kx0 * in_c));
        memcpy(d + kx0 * in_c, in_b + (iy * p->in_w + in_x0 + kx0) * in_c, (size_t)((kx1 - kx0) * in_c));
        memset(d + kx1 * in_c, zp, (size_t)((p->kernel_w - kx1) * in_c));
    }
}

void ec_conv2d_s8_dsp(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip)
{
    const int32_t row_len = p->out_w * p->out_c;
    const int32_t in_c = p->in_c;
    const int32_t out_c = p->out_c;
    const int32_t k_size = p->kernel_h * p->kernel_w * in_c;
    const int32_t run = p->kernel_w * in_c; /* one kernel row, contiguous in input and weights */
    const int32_t in_row = p->in_w * in_c;
    /* the last input column a kernel row reads, relative to its first */
    const int32_t x_span = (p->kernel_w - 1) * p->dilation_w;
    /* border pixels: their padded kernel window copied to `win` when it fits (win_ok), else the
     * unfolded bias of the first channels in `cache` */
    union {
        int32_t cache[EC_BIAS_CACHE];
        int8_t win[EC_BIAS_CACHE * 4];
    } u;
    int32_t *const cache = u.cache;
    const int win_ok = p->dilation_h == 1 && p->dilation_w == 1 && k_size <= EC_BIAS_CACHE * 4;
    if (!win_ok)
        for (int32_t oc = 0; oc < out_c && oc < EC_BIAS_CACHE; oc++)
            cache[oc] = unfold_bias(p, filter, bias, oc);
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * in_row;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int8_t *sk = skip != NULL ? skip + out_row : NULL;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            const int fast_y = p->dilation_h == 1 && in_y0 >= 0 && in_y0 + p->kernel_h <= p->in_h &&
                               p->dilation_w == 1;
            int32_t ox = 0;
            while (ox < p->out_w) {
                const int32_t xa0 = ox * p->stride_w - p->pad_left;
                const int32_t xb0 = xa0 + p->stride_w;
                const int pair = ox + 1 < p->out_w;
                const int fast_a = fast_y && xa0 >= 0 && xa0 + x_span < p->in_w;
                const int8_t *xa = in_b + in_y0 * in_row + xa0 * in_c;
                const int8_t *xb = xa + p->stride_w * in_c;
                int32_t n = run, rows = p->kernel_h, step = in_row;
                int both = fast_a && pair && xb0 + x_span < p->in_w;
                if (!both && win_ok && (!fast_a || pair)) {
                    /* a border pixel (and its right neighbour when both windows fit): padded copies */
                    if (!fast_a || !pair || 2 * k_size <= EC_BIAS_CACHE * 4) {
                        copy_window(p, in_b, in_y0, xa0, u.win);
                        xa = u.win;
                        n = k_size;
                        rows = 1;
                        step = k_size;
                        if (pair && 2 * k_size <= EC_BIAS_CACHE * 4) {
                            copy_window(p, in_b, in_y0, xb0, u.win + k_size);
                            xb = u.win + k_size;
                            both = 1;
                        }
                    }
                }
                if (both) {
                    /* two pixels */
                    for (int32_t oc = 0; oc < out_c; oc += 2) {
                        const int32_t oc1 = oc + 1 < out_c ? oc + 1 : oc;
                        int32_t acc[4] = {bias[oc], bias[oc1], bias[oc], bias[oc1]};
                        const int8_t *w0 = filter + oc * k_size;
                        const int8_t *w1 = filter + oc1 * k_size;
                        dot_2x2(xa, xb, w0, w1, n, rows, step, acc);
                        const int32_t i = ox * out_c + oc;
                        dst[i] = ec_conv_out_fast(p, acc[0], oc, sk != NULL ? sk + i : NULL);
                        dst[i + out_c] = ec_conv_out_fast(p, acc[2], oc, sk != NULL ? sk + i + out_c : NULL);
                        if (oc1 != oc) {
                            dst[i + 1] = ec_conv_out_fast(p, acc[1], oc1, sk != NULL ? sk + i + 1 : NULL);
                            dst[i + out_c + 1] = ec_conv_out_fast(p, acc[3], oc1, sk != NULL ? sk + i + out_c + 1 : NULL);
                        }
                    }
                    ox += 2;
                    continue;
                }
                const int windowed = xa == u.win;
                /* one pixel */
                for (int32_t oc = 0; oc < out_c; oc += 2) {
                    const int32_t oc1 = oc + 1 < out_c ? oc + 1 : oc;
                    int32_t acc[2] = {bias[oc], bias[oc1]};
                    if (fast_a || windowed) {
                        const int8_t *w0 = filter + oc * k_size;
                        const int8_t *w1 = filter + oc1 * k_size;
                        dot_1x2(xa, w0, w1, n, rows, step, n, acc);
                    } else if (p->dilation_h == 1 && p->dilation_w == 1) {
                        /* the clipped window with (x + offset), on the unfolded bias */
                        int32_t ky0, ky1, kx0, kx1;
                        ec_tap_range(in_y0, 1, p->kernel_h, p->in_h, &ky0, &ky1);
                        ec_tap_range(xa0, 1, p->kernel_w, p->in_w, &kx0, &kx1);
                        acc[0] = oc < EC_BIAS_CACHE ? cache[oc] : unfold_bias(p, filter, bias, oc);
                        acc[1] = oc1 < EC_BIAS_CACHE ? cache[oc1] : unfold_bias(p, filter, bias, oc1);
                        const int32_t w_off = (ky0 * p->kernel_w + kx0) * in_c;
                        if (ky1 > ky0 && kx1 > kx0)
                            dot_1x2_off(in_b + (in_y0 + ky0) * in_row + (xa0 + kx0) * in_c,
                                        filter + oc * k_size + w_off, filter + oc1 * k_size + w_off,
                                        (kx1 - kx0) * in_c, ky1 - ky0, in_row, run, p->input_offset, acc);
                    } else {
                        conv_pixel(p, in_b, filter, in_y0, xa0, oc, oc1, acc);
                    }
                    const int32_t i = ox * out_c + oc;
                    dst[i] = ec_conv_out_fast(p, acc[0], oc, sk != NULL ? sk + i : NULL);
                    if (oc1 != oc)
                        dst[i + 1] = ec_conv_out_fast(p, acc[1], oc1, sk != NULL ? sk + i + 1 : NULL);
                }
                ox += 1;
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}
