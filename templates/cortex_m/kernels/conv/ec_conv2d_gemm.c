/*
 * ec_conv2d_gemm.c - int8 convolution as a matrix product (see ec_kernels_gemm.h).
 *
 * Per pair of output pixels: their kernel windows are copied into `col` as sign-extended int16
 * pairs (padded taps = the input zero point), then every pair of output channels is a 2x2 block
 * of dot products over it (ec_gemm_2x2), then the accumulators are requantized.
 *
 * Requantization.  TFLM's MultiplyByQuantizedMultiplier for a right shift s >= 1 is
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(a, M), s).  With M in (2^30, 2^31):
 *   SRDHM(a, M)  = floor((a*M + 2^30) / 2^31)                       (both signs, see ec_requant.h)
 *   RDBPOT(q, s) = floor((q + 2^(s-1) - [q < 0]) / 2^s)             (ties away from zero)
 * and q < 0 exactly when a < 0 (M > 2^30: a*M + 2^30 < 0 iff a <= -1).  Adding the output zero point zp:
 *   out = floor(V / 2^(31+s)),  V = a*M + 2^30 + (1 + 2*zp) * 2^(s+30) - 2^31 * [a < 0]
 * which is one multiply-accumulate into 64 bits, a correction, and the high word shifted by
 * s - 1 (the assembly store: one SMMLAR, see ec_gemm_store2).  The generator sets `fast` when every
 * shift is in [-24, -1], no multiplier is 2^30 and the accumulators are bounded (gemm_acc_ok);
 * otherwise each channel takes the same formula with zp added after it when its shift is in
 * [-31, -1] (the constant then fits in 64 bits), else the reference
 * ec_multiply_by_quantized_multiplier (requant_one).
 */
#include "ec_kernels_gemm.h"
#include "ec_requant.h"
#include "ec_simd.h"

#include <string.h>

/* ---- the 2x2 block product ---------------------------------------------------- */

/* The entry of both block products: the frame (col, acc, pairs left, entry address, passes, a
 * spare word), weights in r12, and the first pass's entry into the 16 chunks of CHUNK bytes at 3:
 * part way, so that the passes cover exactly k4 chunks (Duff's device). */
#define GM_BLOCK_ENTRY(NAME, CHUNK) \
    EC_ASM_FUNC(NAME) \
    "    push {r4-r11, lr}\n" \
    "    sub sp, sp, #24\n" \
    "    str r1, [sp, #0]\n" \
    "    str r2, [sp, #4]\n" \
    "    str r3, [sp, #8]\n" \
    "    mov r12, r0\n" \
    "    ldr r4, [sp, #60]\n"      /* k4: chunks */ \
    "    add r5, r4, #15\n" \
    "    lsr r5, r5, #4\n" \
    "    str r5, [sp, #16]\n"      /* passes */ \
    "    rsb r4, r4, #0\n" \
    "    and r4, r4, #15\n"        /* chunks skipped on the first pass */ \
    "    mov r5, #" #CHUNK "\n" \
    "    mul r4, r4, r5\n" \
    "    adr r5, 3f\n" \
    "    add r4, r4, r5\n" \
    "    orr r4, r4, #1\n" \
    "    str r4, [sp, #12]\n"      /* entry (Thumb) */

/* After a pair's passes: its four sums to acc (acc += 4) */
#define GM_ACC_STORE \
    "    ldr r4, [sp, #4]\n" \
    "    stmia r4!, {r0-r3}\n" \
    "    str r4, [sp, #4]\n"

/* The next pair (back to 1:), else return */
#define GM_BLOCK_EXIT(NAME) \
    "    ldr r4, [sp, #8]\n" \
    "    subs r4, r4, #1\n" \
    "    str r4, [sp, #8]\n" \
    "    bne 1b\n" \
    "    add sp, sp, #24\n" \
    "    pop {r4-r11, pc}\n" \
    EC_ASM_END(NAME)


/*
 * For each of `pairs` output-channel pairs: acc[0..3] (row 0 pixel 0, row 1 pixel 0, row 0
 * pixel 1, row 1 pixel 1; when `bias` is not NULL they start from the pair's two biases instead,
 * and bias += 2) += the dot products of the pair's k4 * 8 packed weights with the two
 * pixels in `col`; then acc += 4 and w skips `wskip` bytes (the pair's other blocks).
 */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
void ec_gemm_2x2(const int8_t *w, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4, int32_t wskip,
                 const int32_t *bias);
/* r0-r3 accumulators, r4-r7 four words of col (both pixels, 4 taps), r8/r9 four weights of each
 * row, r10 the even or odd halves of a row, r11 col, r12 weights, lr the pass counter.
 * One chunk: 4 taps of both rows and both pixels (16 MACs, 14 instructions of 4 bytes each).
 * The loop runs 16 chunks a pass; the first pass enters part way (Duff's device), so a pair of
 * output channels costs 2 loop instructions per 64 taps.  Stack: col, acc, pairs left, entry
 * address, passes; then the saved registers, then the arguments k4, wskip and bias. */
#define GM_MAC_CHUNK \
    "    ldm r11!, {r4-r7}\n" \
    "    ldrd r8, r9, [r12], #8\n" \
    "    sxtb16 r10, r8\n" \
    "    sxtb16 r8, r8, ror #8\n" \
    "    smlad r0, r10, r4, r0\n" \
    "    smlad r0, r8, r5, r0\n" \
    "    smlad r2, r10, r6, r2\n" \
    "    smlad r2, r8, r7, r2\n" \
    "    sxtb16 r10, r9\n" \
    "    sxtb16 r9, r9, ror #8\n" \
    "    smlad r1, r10, r4, r1\n" \
    "    smlad r1, r9, r5, r1\n" \
    "    smlad r3, r10, r6, r3\n" \
    "    smlad r3, r9, r7, r3\n"
__asm__(
    GM_BLOCK_ENTRY("ec_gemm_2x2", 56)
    "1:\n"
    "    ldr r4, [sp, #68]\n"      /* bias: the accumulators start from it, else from acc */
    "    cbz r4, 6f\n"
    "    ldrd r0, r1, [r4], #8\n"
    "    str r4, [sp, #68]\n"
    "    mov r2, r0\n"
    "    mov r3, r1\n"
    "    b 7f\n"
    "6:\n"
    "    ldr r4, [sp, #4]\n"
    "    ldm r4, {r0-r3}\n"
    "7:\n"
    "    ldr r11, [sp, #0]\n"
    "    ldr lr, [sp, #16]\n"
    "    ldr r4, [sp, #12]\n"
    "    bx r4\n"
    "    .p2align 2\n"
    "3:\n"
    GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK
    GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK GM_MAC_CHUNK
    "5:\n"
    "    .if (5b - 3b) - 16 * 56\n"
    "    .error \"ec_gemm_2x2: a chunk is not 56 bytes\"\n"
    "    .endif\n"
    "    subs lr, lr, #1\n"
    "    bne 3b\n"
    GM_ACC_STORE
    "    ldr r4, [sp, #64]\n"
    "    add r12, r12, r4\n"
    GM_BLOCK_EXIT("ec_gemm_2x2"));
#else
/* The same arithmetic in plain C (host builds): SMLAD's wrap-around sums included. */
static void ec_gemm_2x2(const int8_t *w, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4, int32_t wskip,
                        const int32_t *bias)
{
    for (; pairs > 0; pairs--) {
        uint32_t a[4] = {(uint32_t)acc[0], (uint32_t)acc[1], (uint32_t)acc[2], (uint32_t)acc[3]};
        if (bias != NULL) {
            a[0] = a[2] = (uint32_t)bias[0];
            a[1] = a[3] = (uint32_t)bias[1];
            bias += 2;
        }
        const uint32_t *x = col;
        for (int32_t k = 0; k < k4; k++) {
            /* col, per pixel: word 0 = taps (0, 2), word 1 = taps (1, 3) as int16 pairs */
            for (int px = 0; px < 2; px++) {
                const int32_t t0 = (int16_t)(x[2 * px] & 0xffffu), t2 = (int16_t)(x[2 * px] >> 16);
                const int32_t t1 = (int16_t)(x[2 * px + 1] & 0xffffu), t3 = (int16_t)(x[2 * px + 1] >> 16);
                for (int r = 0; r < 2; r++)
                    a[r + 2 * px] += (uint32_t)(t0 * w[4 * r] + t1 * w[4 * r + 1] + t2 * w[4 * r + 2] +
                                                t3 * w[4 * r + 3]);
            }
            x += 4;
            w += 8;
        }
        for (int i = 0; i < 4; i++)
            acc[i] = (int32_t)a[i];
        acc += 4;
        w += wskip;
    }
}
#endif

/* ---- the 2x2 block product on widened weights -------------------------------------- */

/*
 * As ec_gemm_2x2 (always from the bias) with the weights already sign-extended: per output-channel
 * pair and 4 taps, 4 words in `w16` (row 0 taps (0, 2), row 0 taps (1, 3), row 1 the same), the
 * pairs one after the other (kbp words each).  The layer widens them once per tile of pairs
 * (widen), so the inner loop is two LDMs and eight SMLADs per 16 MACs.
 */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
/* r0-r3 accumulators, r4-r7 four words of col, r8-r10 and lr four words of weights, r11 col, r12
 * weights.  One chunk: 10 instructions of 4 bytes.  Stack: col, acc, pairs left, entry address,
 * passes, passes left; then the saved registers, then the arguments k4 and bias. */
#define GM16_MAC_CHUNK \
    "    ldm r11!, {r4-r7}\n" \
    "    ldm r12!, {r8-r10, lr}\n" \
    "    smlad r0, r8, r4, r0\n" \
    "    smlad r0, r9, r5, r0\n" \
    "    smlad r2, r8, r6, r2\n" \
    "    smlad r2, r9, r7, r2\n" \
    "    smlad r1, r10, r4, r1\n" \
    "    smlad r1, lr, r5, r1\n" \
    "    smlad r3, r10, r6, r3\n" \
    "    smlad r3, lr, r7, r3\n"
/* The pair loop of ec_gemm16_2x2 (PASS_START/PASS_END: the pass count, empty when one pass does). */
#define GM16_BODY(NAME, PASS_START, PASS_END) \
    GM_BLOCK_ENTRY(NAME, 40) \
    "1:\n" \
    "    ldr r4, [sp, #64]\n"      /* bias */ \
    "    ldrd r0, r1, [r4], #8\n" \
    "    str r4, [sp, #64]\n" \
    "    mov r2, r0\n" \
    "    mov r3, r1\n" \
    "    ldr r11, [sp, #0]\n" \
    PASS_START \
    "    ldr r4, [sp, #12]\n" \
    "    bx r4\n" \
    "    .p2align 2\n" \
    "3:\n" \
    GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK \
    GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK GM16_MAC_CHUNK \
    GM16_MAC_CHUNK GM16_MAC_CHUNK \
    "5:\n" \
    "    .if (5b - 3b) - 16 * 40\n" \
    "    .error \"" NAME ": a chunk is not 40 bytes\"\n" \
    "    .endif\n" \
    PASS_END \
    GM_ACC_STORE \
    GM_BLOCK_EXIT(NAME)
__asm__(GM16_BODY("ec_gemm16_2x2",
                  "    ldr r4, [sp, #16]\n"
                  "    str r4, [sp, #20]\n",
                  "    ldr r4, [sp, #20]\n"
                  "    subs r4, r4, #1\n"
                  "    str r4, [sp, #20]\n"
                  "    bne 3b\n"));
/* k4 <= 16 (at most 64 taps: one pass), without the pass count: 6 instructions fewer a pair */
__asm__(GM16_BODY("ec_gemm16_2x2_1", "", ""));
#else
/* The same arithmetic in plain C (host builds). */
void ec_gemm16_2x2(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                   const int32_t *bias)
{
    for (; pairs > 0; pairs--, bias += 2, acc += 4) {
        uint32_t a[4] = {(uint32_t)bias[0], (uint32_t)bias[1], (uint32_t)bias[0], (uint32_t)bias[1]};
        const uint32_t *x = col;
        for (int32_t k = 0; k < k4; k++, x += 4, w16 += 4) {
            for (int i = 0; i < 4; i++) { /* i: pixel (i >> 1), row (i & 1) */
                const uint32_t *xp = x + 2 * (i >> 1), *wr = w16 + 2 * (i & 1);
                int32_t s = 0;
                for (int h = 0; h < 2; h++)
                    s += (int32_t)(int16_t)(xp[h] & 0xffffu) * (int16_t)(wr[h] & 0xffffu) +
                         (int32_t)(int16_t)(xp[h] >> 16) * (int16_t)(wr[h] >> 16);
                a[(i & 1) + 2 * (i >> 1)] += (uint32_t)s;
            }
        }
        for (int i = 0; i < 4; i++)
            acc[i] = (int32_t)a[i];
    }
}

void ec_gemm16_2x2_1(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                     const int32_t *bias)
{
    ec_gemm16_2x2(w16, col, acc, pairs, k4, bias);
}
#endif

/* The packed int8 weights of `pairs` channel pairs (8 bytes per 4 taps) as ec_gemm16_2x2 reads them. */
static EC_HOT void widen(const int8_t *wpk, uint32_t *w16, int32_t pairs, int32_t kbp)
{
    for (int32_t i = pairs * kbp >> 2; i > 0; i--, wpk += 8, w16 += 4) {
        const uint32_t r0 = ec_load32(wpk), r1 = ec_load32(wpk + 4);
        w16[0] = EC_SXTB16(r0);
        w16[1] = EC_SXTB16_ROR8(r0);
        w16[2] = EC_SXTB16(r1);
        w16[3] = EC_SXTB16_ROR8(r1);
    }
}

/* ---- the kernel windows --------------------------------------------------------- */

/* Expand n bytes (a multiple of 4) into one pixel's slots of col: per 4 taps, the even taps'
 * int16 pair then the odd taps', every 4 words. */
EC_INLINE uint32_t *expand(const int8_t *s, int32_t n, uint32_t *c)
{
    for (int32_t i = 0; i < n; i += 4) {
        const uint32_t v = ec_load32(s + i);
        c[0] = EC_SXTB16(v);
        c[1] = EC_SXTB16_ROR8(v);
        c += 4;
    }
    return c;
}

/* expand, two words a pass (the hot copies) */
EC_INLINE uint32_t *expand2(const int8_t *s, int32_t n, uint32_t *c)
{
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32_t v = ec_load32(s + i), u = ec_load32(s + i + 4);
        c[0] = EC_SXTB16(v);
        c[1] = EC_SXTB16_ROR8(v);
        c[4] = EC_SXTB16(u);
        c[5] = EC_SXTB16_ROR8(u);
        c += 8;
    }
    return i < n ? expand(s + i, 4, c) : c;
}

/* A kernel window (or block) wholly inside the input, taps in whole words: `rows` runs of `seg`
 * bytes `stride` apart. */
static EC_HOT void col_inside(const int8_t *src, int32_t stride, int32_t rows, int32_t seg, uint32_t *c)
{
    for (int32_t r = 0; r < rows; r++, src += stride)
        c = expand2(src, seg, c);
}

/* Two adjacent pixels' windows of 8 * n8 bytes each (s, then s + 8 * n8: a 1x1 convolution's pixel
 * pair) into col, 8 taps of both pixels a pass (expand of each pixel into its slots). */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
void ec_gemm_expand_pair(const int8_t *s, uint32_t *col, int32_t n8);
/* r0 pixel 0, r1 pixel 1, r2 col, r3 passes left; r4-r11 the words */
__asm__(
    EC_ASM_FUNC("ec_gemm_expand_pair")
    "    push {r4-r11}\n"
    "    mov r3, r2\n"
    "    mov r2, r1\n"
    "    add r1, r0, r3, lsl #3\n"
    "1:\n"
    "    ldrd r4, r5, [r0], #8\n"
    "    ldrd r6, r7, [r1], #8\n"
    "    sxtb16 r8, r4\n"
    "    sxtb16 r9, r4, ror #8\n"
    "    sxtb16 r10, r6\n"
    "    sxtb16 r11, r6, ror #8\n"
    "    sxtb16 r4, r5\n"
    "    sxtb16 r5, r5, ror #8\n"
    "    sxtb16 r6, r7\n"
    "    sxtb16 r7, r7, ror #8\n"
    "    stmia r2!, {r8-r11}\n"
    "    stmia r2!, {r4-r7}\n"
    "    subs r3, r3, #1\n"
    "    bne 1b\n"
    "    pop {r4-r11}\n"
    "    bx lr\n"
    EC_ASM_END("ec_gemm_expand_pair"));
#else
static void ec_gemm_expand_pair(const int8_t *s, uint32_t *col, int32_t n8)
{
    expand(s, 8 * n8, col);
    expand(s + 8 * n8, 8 * n8, col + 2);
}
#endif

/* Loops the compiler must not turn back into memset/memcpy calls (see EC_HOT_LOOPS) */
EC_INLINE void fill_bytes(int8_t *d, int v, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        d[i] = (int8_t)v;
}

EC_INLINE void copy_bytes(int8_t *d, const int8_t *s, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        d[i] = s[i];
}

/* The bytes a kernel row takes in col: kernel_w * in_c rounded up to whole words (the generator
 * packs each row's weights so, with zero weights after a row's taps). */
EC_INLINE int32_t kernel_row_bytes(const ec_conv_params_t *p)
{
    return (p->kernel_w * p->in_c + 3) & ~3;
}

/* Block `blk` of the kernel window of the output pixel whose first input tap is (iy0, ix0) into
 * col (this pixel's slots); padded taps are the input zero point, a row's padding to whole words
 * is zero. */
static EC_HOT_LOOPS void col_pixel(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *in_b,
                             int32_t iy0, int32_t ix0, int32_t blk, uint32_t *col, int8_t *tmp)
{
    const int32_t in_c = p->in_c;
    const int32_t seg = p->kernel_w * in_c, kseg = kernel_row_bytes(p);
    const int32_t ky0 = g->nb == 1 ? 0 : blk;
    const int32_t ky1 = g->nb == 1 ? p->kernel_h : blk + 1;
    const int zp = (int8_t)(-p->input_offset);
    int32_t kx0, kx1;
    ec_tap_range(ix0, 1, p->kernel_w, p->in_w, &kx0, &kx1);
    uint32_t *c = col;
    const uint32_t zw = EC_SXTB16((uint32_t)(uint8_t)zp * 0x01010101u); /* two padded taps as int16 */
    if (in_c & 3) {
        /* a few bytes a tap (in_c 1 to 3: first layers): per row its taps inside the input into tmp,
         * whose padded taps (the zero point) are written once for the window, then expanded; a row
         * outside the input is zero-point words (a row's padding to whole words has zero weights:
         * any value does) */
        const int32_t n_in = kx1 > kx0 ? (kx1 - kx0) * in_c : 0, rowb = p->in_w * in_c;
        if (kseg == 4 && rowb >= 4 && n_in > 0) {
            /* a row is one word (10x4 on one channel, DS-CNN): the taps inside the input from one
             * load within the input row, shifted into place, the padded taps' zero points around */
            const int32_t first = (ix0 + kx0) * in_c, at = first + 4 <= rowb ? first : rowb - 4;
            const uint32_t mask = n_in == 4 ? 0xffffffffu : (1u << (8 * n_in)) - 1u;
            const int32_t rs = 8 * (first - at), sh = 8 * kx0 * in_c;
            const uint32_t pad = ((uint32_t)(uint8_t)zp * 0x01010101u) & ~(mask << sh);
            for (int32_t ky = ky0; ky < ky1; ky++, c += 4) {
                const int32_t iy = iy0 + ky;
                if (iy >= 0 && iy < p->in_h) {
                    /* (rowb >= kseg: the window is clipped on one side at most, so the shifts
                     * leave no other input byte in the word) */
                    const uint32_t v = ((ec_load32(in_b + iy * rowb + at) >> rs) << sh) | pad;
                    c[0] = EC_SXTB16(v);
                    c[1] = EC_SXTB16_ROR8(v);
                } else {
                    c[0] = c[1] = zw;
                }
            }
            return;
        }
        fill_bytes(tmp, zp, kseg);
        for (int32_t ky = ky0; ky < ky1; ky++) {
            const int32_t iy = iy0 + ky;
            if (iy >= 0 && iy < p->in_h && n_in > 0) {
                const int8_t *src = in_b + (iy * p->in_w + ix0 + kx0) * in_c;
                if (n_in == kseg) { /* the whole row inside, in whole words */
                    c = expand(src, kseg, c);
                    continue;
                }
                copy_bytes(tmp + kx0 * in_c, src, n_in);
                c = expand(tmp, kseg, c);
            } else {
                for (int32_t i = 0; i < kseg; i += 4, c += 4)
                    c[0] = c[1] = zw;
            }
        }
        return;
    }
    for (int32_t ky = ky0; ky < ky1; ky++) {
        const int32_t iy = iy0 + ky;
        const int row_ok = iy >= 0 && iy < p->in_h;
        if (row_ok && kx0 == 0 && kx1 == p->kernel_w && kseg == seg) {
            c = expand(in_b + (iy * p->in_w + ix0) * in_c, seg, c);
            continue;
        }
        /* whole words per tap: the padded taps are zero-point words, no gather */
        for (int32_t kx = 0; kx < p->kernel_w; kx++) {
            if (row_ok && kx >= kx0 && kx < kx1) {
                c = expand(in_b + (iy * p->in_w + ix0 + kx) * in_c, in_c, c);
            } else {
                for (int32_t i = 0; i < in_c; i += 4) {
                    c[0] = zw;
                    c[1] = zw;
                    c += 4;
                }
            }
        }
    }
}

/* Block `blk` of a pixel's kernel window into col: col_inside when it lies inside the input (rows
 * of kernel_row_bytes: a row whose taps end inside a word reads the next bytes of the input with
 * it, multiplied by zero weights, so the last row must not end within 3 bytes of the input). */
static EC_NOINLINE void col_window(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *in_b, int32_t iy0,
                          int32_t ix0, int32_t blk, uint32_t *col, int8_t *tmp)
{
    const int32_t ky0 = g->nb == 1 ? 0 : blk, ky1 = g->nb == 1 ? p->kernel_h : blk + 1;
    const int32_t kseg = kernel_row_bytes(p), row = p->in_w * p->in_c;
    const int inside = iy0 + ky0 >= 0 && iy0 + ky1 <= p->in_h && ix0 >= 0 && ix0 + p->kernel_w <= p->in_w &&
                       (iy0 + ky1 - 1) * row + ix0 * p->in_c + kseg <= p->in_h * row;
    if (inside)
        col_inside(in_b + (iy0 + ky0) * row + ix0 * p->in_c, row, ky1 - ky0, kseg, col);
    else
        col_pixel(p, g, in_b, iy0, ix0, blk, col, tmp);
}

/* ---- requantization -------------------------------------------------------------- */

/* -2^31, hidden from the optimizer so that the sign correction stays one SMLAL */
EC_INLINE int32_t kneg31(void)
{
    int32_t k = INT32_MIN;
#if defined(__GNUC__)
    __asm__("" : "+r"(k));
#endif
    return k;
}

/* 2^30 + t * 2^31, t = (1 + 2 zp) << (s - 1): the constant of the header comment (s <= 24) */
EC_INLINE int64_t rq_const(int32_t zp2, int32_t sm1)
{
    const int32_t t = (int32_t)((uint32_t)zp2 << sm1);
    return (int64_t)(((uint64_t)(uint32_t)(t >> 1) << 32) | (0x40000000u | ((uint32_t)t << 31)));
}

/* floor(V / 2^(31+s)): a * m + c, minus 2^31 when a < 0, high word shifted by s - 1 */
EC_INLINE int32_t rq_apply(int32_t a, int32_t m, int64_t c, int32_t sm1, int32_t kneg)
{
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
    /* two SMLALs (the compiler turns the second into a multiply by a constant otherwise) */
    uint32_t lo = (uint32_t)c;
    int32_t hi = (int32_t)(c >> 32);
    const int32_t neg = (int32_t)((uint32_t)a >> 31);
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(a), "r"(m));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(neg), "r"(kneg));
    return hi >> sm1;
#else
    int64_t v = c + (int64_t)a * m;
    v += (int64_t)(int32_t)((uint32_t)a >> 31) * kneg;
    return (int32_t)(v >> 32) >> sm1;
#endif
}

/* The fused residual add (TFLM's AddFunc) with the same requantization. */
typedef struct {
    int32_t m1, m2, mo, s1, s2, so;
    int64_t c1, c2, co;
    int32_t off1, off2, ls, lo, hi;
} gm_add_t;

static void add_setup(const ec_add_params_t *a, gm_add_t *s)
{
    s->m1 = a->input1_multiplier;
    s->m2 = a->input2_multiplier;
    s->mo = a->output_multiplier;
    s->s1 = -a->input1_shift - 1;
    s->s2 = -a->input2_shift - 1;
    s->so = -a->output_shift - 1;
    s->c1 = s->s1 < 0 ? 0 : rq_const(1, s->s1);
    s->c2 = s->s2 < 0 ? 0 : rq_const(1, s->s2);
    s->co = rq_const(1 + 2 * a->output_offset, s->so);
    s->off1 = a->input1_offset;
    s->off2 = a->input2_offset;
    s->ls = a->left_shift;
    s->lo = a->act_min;
    s->hi = a->act_max;
}

/* An add input's rescale: multiplier 2^30 with shift 0 (TFLite's choice for the input with the
 * larger scale) is floor((x + 1) / 2) = x / 2 for the even x = (offset + v) << left_shift. */
EC_INLINE int32_t add_in(int32_t x, int32_t m, int64_t c, int32_t sm1, int32_t kneg)
{
    return sm1 < 0 ? x >> 1 : rq_apply(x, m, c, sm1, kneg);
}

EC_INLINE int32_t add_apply(const gm_add_t *s, int32_t a, int32_t b, int32_t kneg)
{
    const int32_t x1 = (int32_t)((uint32_t)(s->off1 + a) << s->ls);
    const int32_t x2 = (int32_t)((uint32_t)(s->off2 + b) << s->ls);
    const int32_t sum = add_in(x1, s->m1, s->c1, s->s1, kneg) + add_in(x2, s->m2, s->c2, s->s2, kneg);
    const int32_t o = rq_apply(sum, s->mo, s->co, s->so, kneg);
    return o < s->lo ? s->lo : (o > s->hi ? s->hi : o);
}

/* Requantize the accumulators of one pixel pair into d0 and d1 (the one-multiply path, the
 * activation range [-128, 127], an even number of channels).  With h = floor((a*M + 2^30) / 2^31)
 * (SRDHM's positive rounding for both signs, see the header comment), the output is
 *   floor((h - [a < 0] + (1 + 2 zp) << (s - 1)) / 2^s)
 * and h is one SMMLAR of 2a and M, accumulating the constant: seven instructions an output.  The
 * generator sets `fast` only when every accumulator is below 2^30 in magnitude and every constant
 * leaves room for it (no overflow anywhere; c_codegen.gemm_acc_ok). */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
#define GM_ASM_STORE 1
void ec_gemm_store2(const int32_t *acc, int8_t *d0, int8_t *d1, int32_t channel_pairs, const int32_t *mult,
                    const int8_t *shift, int32_t zp2);
/* r0 accumulators, r1/r2 the two pixels' outputs, r3 count, r4 multipliers, r5 shifts, r6 1 + 2 zp,
 * r7 s - 1, r8 one accumulator, r9 its multiplier, r10 s, r11 (1 + 2 zp) << (s - 1), r12 the sum */
#define GM_RQ_ONE(OFF, DST)                                                                          \
    "    ldr r8, [r0, #" #OFF "]\n"                                                                   \
    "    lsl r12, r8, #1\n"                                                                           \
    "    smmlar r12, r12, r9, r11\n"                                                                  \
    "    add r12, r12, r8, asr #31\n"                                                                 \
    "    asr r12, r12, r10\n"                                                                         \
    "    ssat r12, #8, r12\n"                                                                         \
    "    strb r12, [" DST "], #1\n"
#define GM_RQ_CHANNEL(OFF0, OFF1)                                                                    \
    "    ldr r9, [r4], #4\n"                                                                          \
    "    ldrsb r10, [r5], #1\n"                                                                       \
    "    mvn r7, r10\n"                                                                               \
    "    lsl r11, r6, r7\n"                                                                           \
    "    rsb r10, r10, #0\n" GM_RQ_ONE(OFF0, "r1") GM_RQ_ONE(OFF1, "r2")
__asm__(
    EC_ASM_FUNC("ec_gemm_store2")
    "    push {r4-r11, lr}\n"
    "    ldr r4, [sp, #36]\n"
    "    ldr r5, [sp, #40]\n"
    "    ldr r6, [sp, #44]\n"
    "1:\n"
    GM_RQ_CHANNEL(0, 8)
    GM_RQ_CHANNEL(4, 12)
    "    add r0, r0, #16\n"
    "    subs r3, r3, #1\n"
    "    bne 1b\n"
    "    pop {r4-r11, pc}\n"
    EC_ASM_END("ec_gemm_store2"));

/* ec_gemm_store2k (see the header): one LDM a channel instead of five instructions. */
#define GM_RQK_CHANNEL(OFF0, OFF1)                                                                   \
    "    ldm r4!, {r9, r10, r11}\n" GM_RQ_ONE(OFF0, "r1") GM_RQ_ONE(OFF1, "r2")
__asm__(
    EC_ASM_FUNC("ec_gemm_store2k")
    "    push {r4-r11, lr}\n"
    "    ldr r4, [sp, #36]\n"
    "1:\n"
    GM_RQK_CHANNEL(0, 8)
    GM_RQK_CHANNEL(4, 12)
    "    add r0, r0, #16\n"
    "    subs r3, r3, #1\n"
    "    bne 1b\n"
    "    pop {r4-r11, pc}\n"
    EC_ASM_END("ec_gemm_store2k"));
#else
/* The assembly's arithmetic in C (host builds): h = k + SMMLAR(2a, M) - [a < 0], h >> s, saturated */
void ec_gemm_store2k(const int32_t *acc, int8_t *d0, int8_t *d1, int32_t channel_pairs, const int32_t *rq)
{
    for (int32_t c = 0; c < 2 * channel_pairs; c++, rq += 3) {
        for (int px = 0; px < 2; px++) {
            const int32_t a = acc[(c >> 1) * 4 + (c & 1) + 2 * px];
            const int64_t prod = (int64_t)(int32_t)((uint32_t)a << 1) * rq[0] + ((int64_t)1 << 31);
            int32_t h = (int32_t)((uint32_t)rq[2] + (uint32_t)(int32_t)(prod >> 32)) + (a < 0 ? -1 : 0);
            h >>= rq[1];
            (px == 0 ? d0 : d1)[c] = (int8_t)(h < -128 ? -128 : h > 127 ? 127 : h);
        }
    }
}
#define GM_ASM_STORE 0
#endif

static EC_HOT void store_fast(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc,
                              int8_t *d0, int8_t *d1, int32_t oc0, int32_t oc1)
{
    if (g != NULL && g->store2k != NULL) { /* (the generator checked its conditions) */
        g->store2k(acc, d0 + oc0, d1 + oc0, (oc1 - oc0) >> 1, g->rq + 3 * oc0);
        return;
    }
#if GM_ASM_STORE
    if (p->act_min == -128 && p->act_max == 127 && ((oc1 - oc0) & 1) == 0) {
        ec_gemm_store2(acc, d0 + oc0, d1 + oc0, (oc1 - oc0) >> 1, p->multiplier + oc0, p->shift + oc0,
                       1 + 2 * p->output_offset);
        return;
    }
#endif

    const int32_t lo = p->act_min, hi = p->act_max, zp2 = 1 + 2 * p->output_offset;
    const int32_t *mult = p->multiplier;
    const int8_t *shift = p->shift;
    const int32_t kneg = kneg31();
    acc -= 2 * oc0; /* acc holds channels oc0.. */
    for (int32_t oc = oc0; oc < oc1; oc++) {
        const int32_t *a = acc + (oc >> 1) * 4 + (oc & 1);
        const int32_t m = mult[oc], sm1 = -shift[oc] - 1;
        const int64_t c = rq_const(zp2, sm1);
        d0[oc] = (int8_t)ec_clip_i32(EC_SSAT8(rq_apply(a[0], m, c, sm1, kneg)), lo, hi);
        d1[oc] = (int8_t)ec_clip_i32(EC_SSAT8(rq_apply(a[2], m, c, sm1, kneg)), lo, hi);
    }
}

/* One output: requantized, clamped (the one-multiply path when `fast`). */
EC_INLINE int32_t requant_one(const ec_conv_params_t *p, int32_t fast, int32_t a, int32_t oc, int32_t kneg)
{
    const int32_t zp = p->output_offset;
    int32_t v;
    if (fast) {
        const int32_t sm1 = -p->shift[oc] - 1;
        v = EC_SSAT8(rq_apply(a, p->multiplier[oc], rq_const(1 + 2 * zp, sm1), sm1, kneg));
    } else {
        /* per channel: the one-multiply formula with the zero point added after it (shifts down to
         * -31: the constant keeps within 64 bits), else the reference */
        const int32_t m = p->multiplier[oc], sh = p->shift[oc];
        if (m > (1 << 30) && sh <= -1 && sh >= -31) {
            const int32_t sm1 = -sh - 1;
            v = EC_SSAT8(rq_apply(a, m, rq_const(1, sm1), sm1, kneg) + zp);
        } else {
            v = ec_multiply_by_quantized_multiplier(a, m, sh) + zp;
        }
    }
    return ec_clip_i32(v, p->act_min, p->act_max);
}

/* Any other case without a residual add: one pixel (d1 NULL), or the reference requantization.
 * Not inlined: its registers would otherwise stay on the layer's stack frame under col_pixel's. */
static EC_NOINLINE void store_general(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc,
                                      int8_t *d0, int8_t *d1, int32_t oc0, int32_t oc1)
{
    const int32_t kneg = kneg31();
    acc -= 2 * oc0; /* acc holds channels oc0.. */
    for (int32_t oc = oc0; oc < oc1; oc++) {
        const int32_t *a = acc + (oc >> 1) * 4 + (oc & 1);
        d0[oc] = (int8_t)requant_one(p, g->fast, a[0], oc, kneg);
        if (d1 != NULL)
            d1[oc] = (int8_t)requant_one(p, g->fast, a[2], oc, kneg);
    }
}

/* The run of residual additions through the tables (ec_gemm_add_tables: each input's rescaled value,
 * doubled, by its int8 value): d[i] = clamp(requantize(t1[v[i]] + t2[s[i]])) with the output's
 * one-multiply requantization (the tables exist only where the output's multiplier is in (2^30, 2^31)
 * and its shift in [-24, -1], gemm_fast_requant; |a| < 2^28, so 2a fits), as ec_gemm_store2k:
 * h = SMMLAR(2a, M, (1 + 2 zp) << (s - 1)) - [a < 0], out = h >> s, saturated, clamped. */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
#define GM_ASM_ADD 1
void ec_gemm_add_run2(const int8_t *v, const int8_t *s, int8_t *d, int32_t pairs, const int32_t *c);
/* r0 v, r1 s, r2 d, r3 pairs left; from c: r4/r5 the tables, r6 M, r7 (1 + 2 zp) << (s - 1), r8 s,
 * r9/r10 the clamp's bounds in every byte (SSUB8 and SEL clamp the low byte); r11/r12 the two
 * inputs' values, lr the output.  Per element 2 + 1 + 1 + 1 cycles of loads (the table loads
 * pipelined after the byte loads), 10 instructions more (8 when the upper bound is 127). */
#define GM_ADD_ONE(HI) \
    "    ldrsb r11, [r0], #1\n" \
    "    ldrsb r12, [r1], #1\n" \
    "    ldr r11, [r4, r11, lsl #2]\n" \
    "    ldr r12, [r5, r12, lsl #2]\n" \
    "    add r11, r11, r12\n" \
    "    smmlar lr, r11, r6, r7\n" \
    "    add lr, lr, r11, asr #31\n" \
    "    asr lr, lr, r8\n" \
    "    ssat lr, #8, lr\n" \
    "    ssub8 r12, lr, r9\n" \
    "    sel lr, lr, r9\n" \
    HI \
    "    strb lr, [r2], #1\n"
#define GM_ADD_HI \
    "    ssub8 r12, r10, lr\n" \
    "    sel lr, lr, r10\n"
__asm__(
    EC_ASM_FUNC("ec_gemm_add_run2")
    "    push {r4-r11, lr}\n"
    "    ldr r4, [sp, #36]\n"
    "    ldm r4, {r4-r10}\n"
    "    cmp r10, #0x7f7f7f7f\n"
    "    beq 2f\n"
    "1:\n"
    GM_ADD_ONE(GM_ADD_HI) GM_ADD_ONE(GM_ADD_HI)
    "    subs r3, r3, #1\n"
    "    bne 1b\n"
    "    pop {r4-r11, pc}\n"
    "2:\n"
    GM_ADD_ONE("") GM_ADD_ONE("")
    "    subs r3, r3, #1\n"
    "    bne 2b\n"
    "    pop {r4-r11, pc}\n"
    EC_ASM_END("ec_gemm_add_run2"));
#else
#define GM_ASM_ADD 0
#endif

/* One element of the run (the assembly's arithmetic) */
EC_INLINE int8_t add_one(const int32_t *t1, const int32_t *t2, int8_t v, int8_t s, int32_t m, int32_t k, int32_t sh,
                         int32_t lo, int32_t hi)
{
    const int32_t a2 = (int32_t)((uint32_t)t1[v] + (uint32_t)t2[s]);
    const int32_t o = EC_SSAT8((ec_smmlar(a2, m, k) + (a2 >> 31)) >> sh);
    return (int8_t)(o < lo ? lo : (o > hi ? hi : o));
}

/* d[i] = the residual add of v[i] and s[i] (d may be s) */
static EC_HOT void add_run(const ec_add_params_t *a, const int32_t *tables, const int8_t *v, const int8_t *s,
                           int8_t *d, int32_t n)
{
    if (tables != NULL) {
        const int32_t *t1 = tables + 128, *t2 = tables + 384; /* indexed by the int8 value */
        const int32_t sh = -a->output_shift, m = a->output_multiplier;
        const int32_t k = (int32_t)((uint32_t)(1 + 2 * a->output_offset) << (sh - 1));
        const int32_t lo = a->act_min, hi = a->act_max;
        if (n & 1) {
            d[0] = add_one(t1, t2, v[0], s[0], m, k, sh, lo, hi);
            v++, s++, d++, n--;
        }
#if GM_ASM_ADD
        const int32_t c[7] = {(int32_t)(uintptr_t)t1, (int32_t)(uintptr_t)t2, m, k, sh,
                              (int32_t)((uint32_t)(uint8_t)lo * 0x01010101u),
                              (int32_t)((uint32_t)(uint8_t)hi * 0x01010101u)};
        if (n > 0)
            ec_gemm_add_run2(v, s, d, n >> 1, c);
#else
        for (int32_t i = 0; i < n; i++)
            d[i] = add_one(t1, t2, v[i], s[i], m, k, sh, lo, hi);
#endif
        return;
    }
    gm_add_t ad;
    add_setup(a, &ad);
    const int32_t kneg = kneg31();
    for (int32_t i = 0; i < n; i++)
        d[i] = (int8_t)add_apply(&ad, v[i], s[i], kneg);
}

/* The tables hold each input's rescaled value doubled (the run's requantization reads 2a). */
void ec_gemm_add_tables(const ec_conv_params_t *p, const ec_gemm_params_t *g)
{
    gm_add_t ad;
    add_setup(p->residual, &ad);
    const int32_t kneg = kneg31();
    for (int32_t v = -128; v < 128; v++) {
        g->add_tables[128 + v] =
            2 * add_in((int32_t)((uint32_t)(ad.off1 + v) << ad.ls), ad.m1, ad.c1, ad.s1, kneg);
        g->add_tables[384 + v] =
            2 * add_in((int32_t)((uint32_t)(ad.off2 + v) << ad.ls), ad.m2, ad.c2, ad.s2, kneg);
    }
}

/* Residual outputs channel by channel (ec_gemm_store_residual's other cases). */
static EC_NOINLINE void residual_each(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc,
                                      int8_t *d0, int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1)
{
    const int8_t *s1 = s0 + p->out_c;
    const int32_t kneg = kneg31();
    acc -= 2 * oc0; /* acc holds channels oc0.. */
    if (!g->fast) {
        for (int32_t oc = oc0; oc < oc1; oc++) {
            const int32_t *a = acc + (oc >> 1) * 4 + (oc & 1);
            d0[oc] = (int8_t)ec_add_one_s8(p->residual, requant_one(p, 0, a[0], oc, kneg), s0[oc]);
            if (d1 != NULL)
                d1[oc] = (int8_t)ec_add_one_s8(p->residual, requant_one(p, 0, a[2], oc, kneg), s1[oc]);
        }
        return;
    }
    gm_add_t ad;
    add_setup(p->residual, &ad);
    for (int32_t oc = oc0; oc < oc1; oc++) {
        const int32_t *a = acc + (oc >> 1) * 4 + (oc & 1);
        d0[oc] = (int8_t)add_apply(&ad, requant_one(p, 1, a[0], oc, kneg), s0[oc], kneg);
        if (d1 != NULL)
            d1[oc] = (int8_t)add_apply(&ad, requant_one(p, 1, a[2], oc, kneg), s1[oc], kneg);
    }
}

/* The outputs of a convolution with a fused residual add: requantize, clamp, add the skip values
 * (TFLM's AddFunc); s0 holds pixel 0's skip values, pixel 1's follow.  The output may be the skip
 * tensor itself (each byte is read before it is written).  Reached only through the layer's
 * ec_gemm_params_t, so models without residual adds do not link it.  A small frame: it sits
 * under the layer's, and its callees' frames are not stacked on each other. */
/* Whether a call takes the run of additions (every channel of both pixels, the one-multiply store) */
EC_INLINE int residual_run_ok(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *d1, int32_t oc0,
                              int32_t oc1)
{
    return g->fast && d1 != NULL && oc0 == 0 && oc1 == p->out_c && 2 * p->out_c <= 4 * g->kbp;
}

/* Every call of the layer takes the run (the generator checked: c_codegen.residual_run_ok); so the
 * channel-by-channel code is not linked.  Debug builds trap on a call that does not. */
void ec_gemm_store_residual(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc, int8_t *d0,
                            int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1)
{
    const int32_t n = p->out_c;
#if defined(EC_DEBUG)
    if (!residual_run_ok(p, g, d1, oc0, oc1))
        __builtin_trap();
#endif
    /* every channel of both pixels: the convolution's outputs first (the one-multiply store), into
     * the kernel windows' space (not read again for this pair), then the additions in one run with
     * few values live */
    int8_t *v = (int8_t *)g->work;
    store_fast(p, NULL, acc, v, v + n, 0, n);
    add_run(p->residual, g->add_tables, v, s0, d0, 2 * n);
    (void)d1;
    (void)oc0;
    (void)oc1;
}

/* Any layer with a fused residual add: the run where it can, else channel by channel. */
void ec_gemm_store_residual_any(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc,
                                int8_t *d0, int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1)
{
    if (residual_run_ok(p, g, d1, oc0, oc1))
        ec_gemm_store_residual(p, g, acc, d0, d1, s0, oc0, oc1);
    else
        residual_each(p, g, acc, d0, d1, s0, oc0, oc1);
}

/* ---- the layer ------------------------------------------------------------------- */

/* The outputs of one pixel pair (d1 NULL: one pixel) without a residual add */
EC_INLINE void store_pixels(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc, int8_t *d0,
                            int8_t *d1, int32_t oc0, int32_t oc1)
{
    if (g->fast && d1 != NULL)
        store_fast(p, g, acc, d0, d1, oc0, oc1);
    else
        store_general(p, g, acc, d0, d1, oc0, oc1);
}

/* Computed channels [oc0, oc1) of one or two pixels to their places (n_live > 0). */
static EC_NOINLINE void scatter(const uint16_t *map, const int8_t *e0, const int8_t *e1, int8_t *d0, int8_t *d1,
                                int32_t oc0, int32_t oc1)
{
    for (int32_t k = oc0; k < oc1; k++)
        d0[map[k]] = e0[k];
    if (d1 != NULL)
        for (int32_t k = oc0; k < oc1; k++)
            d1[map[k]] = e1[k];
}

/* Whether a layer's pixel pairs can take pointwise_pairs: a 1x1 convolution, stride 1, no
 * padding, one block of whole 8-tap groups, all channel pairs in one pass (one tile), every
 * channel computed, no residual add; written pixel by pixel, or row by row through the scratch row
 * when the rows have an even number of pixels. */
EC_INLINE int pointwise_ok(const ec_conv_params_t *p, const ec_gemm_params_t *g, int32_t pairs, int32_t tile,
                           const int8_t *skip, int rowwise)
{
    return p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
           p->pad_left == 0 && p->in_h == p->out_h && p->in_w == p->out_w && g->nb == 1 && (p->in_c & 7) == 0 &&
           g->kbp == p->in_c && g->chunk >= pairs && tile >= pairs && g->n_live == 0 && skip == NULL &&
           (!rowwise || (p->out_w & 1) == 0);
}

/* The pixel pairs of a pointwise_ok layer (both pixels' windows are adjacent in the input), into
 * the output or (row not NULL) a row at a time into `row`, then copied to the output: the number of
 * pixels done (an odd last one is left to the general loop). */
static EC_NOINLINE int32_t pointwise_pairs(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *in_b,
                                           int8_t *out_b, uint32_t *col, int32_t *acc, int32_t pairs, int8_t *row)
{
    const int32_t in_c = p->in_c, oc_n = p->out_c, k4 = g->kbp >> 2, n_pix = p->out_h * p->out_w;
    const int32_t run = row != NULL ? p->out_w : n_pix, n2 = run & ~1; /* pixels a run; in pairs */
    for (int32_t r0 = 0; r0 < n_pix; r0 += run) {
        const int8_t *x = in_b + r0 * in_c;
        int8_t *d = row != NULL ? row : out_b + r0 * oc_n;
        for (int32_t i = 0; i < n2; i += 2, x += 2 * in_c, d += 2 * oc_n) {
            ec_gemm_expand_pair(x, col, k4 >> 1); /* (pointwise_ok: kbp = in_c, a multiple of 8) */
            if (g->wtile > 0)
                g->gemm16(g->wbuf, col, acc, pairs, k4, g->bias);
            else
                ec_gemm_2x2(g->wpk, col, acc, pairs, k4, 0, g->bias);
            store_pixels(p, g, acc, d, d + oc_n, 0, oc_n);
        }
        if (row != NULL)
            memcpy(out_b + r0 * oc_n, row, (size_t)(run * oc_n));
    }
    return row != NULL ? n_pix : n2;
}

void ec_conv2d_s8_gemm(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *input, int8_t *output)
{
    const int8_t *wpk = g->wpk;
    const int32_t *bias = g->bias;
    int8_t *row = g->row;
    const int8_t *skip = g->skip_at_output ? output : g->skip;
    int32_t *work = g->work;
    const int32_t oc_n = p->out_c;
    const int32_t n_oc = g->n_live > 0 ? g->n_live : oc_n; /* the channels computed */
    const int32_t pairs = (n_oc + 1) >> 1;
    const int32_t out_w = p->out_w;
    const int32_t n_pix = p->out_h * out_w;
    uint32_t *col = (uint32_t *)work;
    int8_t *tmp = (int8_t *)(col + g->kbp);
    int32_t *acc = (int32_t *)(tmp + (p->in_c % 4 ? g->kbp : 0)); /* (the byte buffer: see col_pixel) */
    const int32_t wblk = 2 * g->kbp;
    const int rowwise = row != NULL && !g->direct;
    /* the output-channel pairs in tiles of wtile (widened weights; the generator uses several
     * tiles only when the output is apart from the input), else all at once */
    const int32_t tile = g->wtile > 0 ? g->wtile : pairs;
    for (int32_t t0 = 0; t0 < pairs; t0 += tile) {
        const int32_t t1 = pairs - t0 < tile ? pairs : t0 + tile;
        if (g->wtile > 0 && wpk != NULL) /* (wpk NULL: the weights are stored widened, in flash) */
            widen(wpk + t0 * wblk, (uint32_t *)g->wbuf, t1 - t0, g->kbp);
        for (int32_t b = 0; b < p->batches; b++) {
            const int8_t *in_b = input + b * p->in_h * p->in_w * p->in_c;
            int8_t *out_b = output + b * n_pix * oc_n;
            const int8_t *sk_b = skip != NULL ? skip + b * n_pix * oc_n : NULL;
            int32_t i = pointwise_ok(p, g, pairs, tile, skip, rowwise)
                            ? pointwise_pairs(p, g, in_b, out_b, col, acc, pairs, rowwise ? row : NULL) : 0;
            while (i < n_pix) {
                /* the pair: pixels i and i + 1 (same row when writing row by row) */
                const int32_t oy = i / out_w, ox = i % out_w;
                const int two = i + 1 < n_pix && (!rowwise || ox + 1 < out_w);
                const int32_t oy1 = two ? (i + 1) / out_w : oy, ox1 = two ? (i + 1) % out_w : ox;
                int8_t *d0 = rowwise ? row + ox * oc_n : out_b + i * oc_n;
                int8_t *d1 = two ? d0 + oc_n : NULL;
                const int8_t *s0 = sk_b != NULL ? sk_b + i * oc_n : NULL;
                for (int32_t blk = 0; blk < g->nb; blk++) {
                    col_window(p, g, in_b, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left, blk,
                               col, tmp);
                    col_window(p, g, in_b, oy1 * p->stride_h - p->pad_top, ox1 * p->stride_w - p->pad_left, blk,
                               col + 2, tmp);
                    /* output channels `chunk` pairs at a time (all of them when there are several blocks) */
                    for (int32_t j0 = t0; j0 < t1; j0 += g->chunk) {
                        const int32_t n = t1 - j0 < g->chunk ? t1 - j0 : g->chunk;
                        int32_t *a = g->nb == 1 ? acc : acc + 4 * j0;
                        if (g->wtile > 0)
                            g->gemm16(g->wbuf + (j0 - t0) * g->kbp, col, a, n, g->kbp >> 2, bias + 2 * j0);
                        else
                            ec_gemm_2x2(wpk + (j0 * g->nb + blk) * wblk, col, a, n, g->kbp >> 2,
                                        (g->nb - 1) * wblk, blk == 0 ? bias + 2 * j0 : NULL);
                        if (blk + 1 < g->nb)
                            continue;
                        const int32_t oc0 = 2 * j0, oc1 = 2 * (j0 + n) < n_oc ? 2 * (j0 + n) : n_oc;
                        /* computed channels only: after the accumulators, then to their places */
                        int8_t *e0 = g->n_live > 0 ? (int8_t *)(acc + 4 * g->chunk) : d0;
                        int8_t *e1 = g->n_live > 0 && d1 != NULL ? e0 + n_oc : d1;
                        if (s0 != NULL)
                            g->residual_store(p, g, a, d0, d1, s0, oc0, oc1);
                        else
                            store_pixels(p, g, a, e0, e1, oc0, oc1);
                        if (g->n_live > 0) {
                            if (oc0 == 0) { /* the constant channels first (the windows are read: in place is safe) */
                                memcpy(d0, g->dead_row, (size_t)oc_n);
                                if (d1 != NULL)
                                    memcpy(d1, g->dead_row, (size_t)oc_n);
                            }
                            scatter(g->live_map, e0, e1, d0, d1, oc0, oc1);
                        }
                    }
                }
                i += two ? 2 : 1;
                if (rowwise && i % out_w == 0)
                    memcpy(out_b + (i - out_w) * oc_n, row, (size_t)(out_w * oc_n));
            }
        }
    }
}
