/*
 * ec_kernels_reduce_dsp.c - the int8 spatial mean with SXTAB16 (see ec_kernels_reduce_dsp.h).
 *
 * A 32-bit load takes 4 channels of one pixel; SXTAB16 adds bytes 0 and 2 (and, rotated by 8,
 * bytes 1 and 3) to two 16-bit lanes.  256 int8 values sum exactly in a 16-bit lane
 * (|sum| <= 32768), so runs of at most 256 pixels are summed in lanes, then added to int32 sums.
 * Two pixels per loop pass: 2 loads and 4 SXTAB16 per 8 values.
 */
#include "ec_kernels_reduce_dsp.h"
#include "ec_requant.h"
#include "ec_simd.h"

/* SXTAB16 and its rotated form: ec_simd.h (the instruction, or its exact C twin) */
#define sxtab16(acc, x) EC_SXTAB16((acc), (x))
#define sxtab16_ror8(acc, x) EC_SXTAB16_ROR8((acc), (x))

#define LANE_RUN 256 /* int8 values a 16-bit lane sums exactly */

/* One output: the channel's int32 sum less zero point * count, requantized with TFLite's arithmetic
 * inlined (ec_mbqm: one SMULL and a rounding shift; TFLite's literal code with its 64-bit division
 * cost about 70 instructions a channel, more than the sum itself over a 3x3 map).  Out of line, so
 * that the sum loop keeps its registers; the kernel is EC_HOT (-O2 in an -Os build). */
static EC_NOINLINE int8_t mean_out(const ec_reduce_params_t *p, int32_t sum, int32_t zp_sum)
{
    const int32_t shifted = (int32_t)((uint32_t)sum + (uint32_t)zp_sum);
    const int32_t v = ec_mbqm(shifted, p->multiplier, p->shift) + p->output_offset;
    return (int8_t)ec_clip_i32(v, p->act_min, p->act_max);
}

EC_HOT void ec_mean_s8_dsp(const ec_reduce_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t c_n = p->kept_dims[2], n = p->red_dims[2], batches = p->kept_dims[1];
    const int32_t zp_sum = (int32_t)((int64_t)p->input_offset * p->count);
    for (int32_t b = 0; b < batches; b++) {
        const int8_t *in_b = input + b * n * c_n;
        int8_t *out_b = output + b * c_n;
        int32_t c = 0;
        for (; c + 4 <= c_n; c += 4) {
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            const int8_t *x = in_b + c;
            for (int32_t left = n; left > 0;) {
                int32_t run = left < LANE_RUN ? left : LANE_RUN;
                left -= run;
                uint32_t even = 0, odd = 0; /* channels (c, c + 2) and (c + 1, c + 3) */
                for (; run >= 2; run -= 2, x += 2 * c_n) {
                    const uint32_t v0 = ec_load32(x), v1 = ec_load32(x + c_n);
                    even = sxtab16(even, v0);
                    odd = sxtab16_ror8(odd, v0);
                    even = sxtab16(even, v1);
                    odd = sxtab16_ror8(odd, v1);
                }
                if (run) {
                    const uint32_t v0 = ec_load32(x);
                    even = sxtab16(even, v0);
                    odd = sxtab16_ror8(odd, v0);
                    x += c_n;
                }
                s0 += (int16_t)(even & 0xffffu);
                s2 += (int16_t)(even >> 16);
                s1 += (int16_t)(odd & 0xffffu);
                s3 += (int16_t)(odd >> 16);
            }
            out_b[c] = mean_out(p, s0, zp_sum);
            out_b[c + 1] = mean_out(p, s1, zp_sum);
            out_b[c + 2] = mean_out(p, s2, zp_sum);
            out_b[c + 3] = mean_out(p, s3, zp_sum);
        }
        for (; c < c_n; c++) {
            int32_t s = 0;
            for (int32_t i = 0; i < n; i++)
                s += in_b[i * c_n + c];
            out_b[c] = mean_out(p, s, zp_sum);
        }
    }
}
