/*
 * ec_kernels_binary_dsp.c - the squeeze-excite multiply (see ec_kernels_binary_dsp.h).
 *
 * TFLM computes MultiplyByQuantizedMultiplier(P, M, -r) + zo with P = (x + xo) * (s + so): a
 * rounding doubling high multiply t = (2 P M + 2^31) >> 32, then a rounding right shift by r
 * (half away from zero).  Per channel k = 2 (s + so) and k xo are made once, then per element
 *     P2 = x k + k xo                     (MLA: 2P)
 *     v  = bias - [P2 < 0] + t            (SMMLAR: the rounded high word of P2 M plus an addend)
 *     y  = SSAT8(v >> r)
 * with bias = 2^(r-1) + zo 2^r: v >> r is the rounding shift of t plus zo (for t >= 0 half up, for
 * t < 0 half down; when P < 0 but t = 0 both addends give zo).  Eight instructions an element, four
 * channels a pass (the channels after the last four: a C loop).
 */
#include "ec_kernels_binary_dsp.h"

#include "ec_simd.h"

#define CHUNK 64 /* channels whose constants sit on the stack at a time */

/* The loop over pixels: kk holds (k, k xo) of n channels (n a multiple of 4); each pixel's n bytes of
 * x and out, then skip bytes to the next pixel. */
typedef struct {
    int32_t m, bias, r, n, skip, pixels;
} cs_loop_t;

#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)

void ec_mul_cs_rows(const int32_t *kk, const int8_t *x, int8_t *out, const cs_loop_t *L);

/* One element: x at r1, (k, k xo) at r0, out at r2; r3, r7, r8, r10 temporaries */
#define CS_ONE \
    "    ldrsb r3, [r1], #1\n" \
    "    ldrd r7, r8, [r0], #8\n" \
    "    mla r3, r3, r7, r8\n" \
    "    add r10, r5, r3, asr #31\n" \
    "    smmlar r3, r3, r4, r10\n" \
    "    asr r3, r3, r6\n" \
    "    ssat r3, #8, r3\n" \
    "    strb r3, [r2], #1\n"

/* r4 m, r5 bias, r6 r, r9 skip, r11 kk, r12 pixels left, lr kk after the last channel */
__asm__(
    EC_ASM_FUNC("ec_mul_cs_rows")
    "    push {r4-r11, lr}\n"
    "    ldmia r3, {r4, r5, r6, r7, r9, r12}\n"
    "    mov r11, r0\n"
    "    add lr, r0, r7, lsl #3\n"
    "1:\n"
    "    mov r0, r11\n"
    "2:\n"
    CS_ONE CS_ONE CS_ONE CS_ONE
    "    cmp r0, lr\n"
    "    bne 2b\n"
    "    add r1, r1, r9\n"
    "    add r2, r2, r9\n"
    "    subs r12, r12, #1\n"
    "    bne 1b\n"
    "    pop {r4-r11, pc}\n"
    EC_ASM_END("ec_mul_cs_rows"));
#else
#define ec_mul_cs_rows cs_rows
#endif
/* SMMLAR: ec_simd.h (the instruction, or its exact C twin) */
#define smmlar(a, b, acc) ec_smmlar((a), (b), (acc))

/* The same loop in C (any n; host builds, and the channels after the last group of four) */
static void cs_rows(const int32_t *kk, const int8_t *x, int8_t *out, const cs_loop_t *L)
{
    for (int32_t i = 0; i < L->pixels; i++, x += L->skip, out += L->skip) {
        for (int32_t c = 0; c < L->n; c++) {
            const int32_t p2 = *x++ * kk[2 * c] + kk[2 * c + 1];
            const int32_t v = smmlar(p2, L->m, L->bias + (p2 >> 31)) >> L->r;
            *out++ = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
    }
}

void ec_mul_s8_channel_scale(const ec_mul_cs_params_t *p, const int8_t *x, const int8_t *s, int8_t *output)
{
    int32_t kk[2 * CHUNK];
    const int32_t nc = p->channels, r = p->right_shift;
    const int32_t bias = (1 << (r - 1)) + p->output_offset * (1 << r);
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *sv = s + b * nc;
        for (int32_t c0 = 0; c0 < nc; c0 += CHUNK) {
            const int32_t n = nc - c0 < CHUNK ? nc - c0 : CHUNK, n4 = n & ~3;
            for (int32_t c = 0; c < n; c++) {
                const int32_t k = 2 * (sv[c0 + c] + p->s_offset);
                kk[2 * c] = k;
                kk[2 * c + 1] = k * p->x_offset;
            }
            const int32_t at = b * p->pixels * nc + c0;
            if (n4 > 0) {
                const cs_loop_t L = {p->multiplier, bias, r, n4, nc - n4, p->pixels};
                ec_mul_cs_rows(kk, x + at, output + at, &L);
            }
            if (n4 < n) { /* each element is read then written at its own place: any order is in place */
                const cs_loop_t L = {p->multiplier, bias, r, n - n4, nc - (n - n4), p->pixels};
                cs_rows(kk + 2 * n4, x + at + n4, output + at + n4, &L);
            }
        }
    }
}
