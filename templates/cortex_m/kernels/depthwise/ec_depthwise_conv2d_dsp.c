/*
 * ec_depthwise_conv2d_dsp.c - int8 depthwise convolution for cores with the DSP extension (Cortex-M4/M7).
 *
 * See ec_kernels_dsp.h for the contract.  The general kernel keeps 4 channels of a pixel in registers
 * (SMLABB/SMLATT); the 3x3 stride-1 and stride-2 paths pair rows and columns as int16 halves (SMLAD).
 */
#include "ec_kernels_dsp.h"
#include "ec_requant.h"
#include "ec_simd.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && defined(__thumb2__)
#define DW_ASM 1 /* dw_chan in assembly */
#endif
#ifndef DW_ASM
#define DW_ASM 0
#endif

/* The fast requantization holds for every channel: M > 2^30 (so q < 0 exactly when acc < 0),
 * a right shift of 1..21 and |bias| <= 2^29 (2 * acc and the rounding constant fit in int32). */
static int dw_requant_ok(const ec_conv_params_t *p, const int32_t *bias)
{
    for (int32_t c = 0; c < p->in_c; c++) {
        const int32_t b = bias != NULL ? bias[c] : 0;
        if (p->multiplier[c] <= (1 << 30) || p->shift[c] > -1 || p->shift[c] < -21 || b > (1 << 29) ||
            b < -(1 << 29))
            return 0;
    }
    return 1;
}

/* The requantization of a = 2 acc: (((a * M + 2^31) >> 32) + zp 2^s + 2^(s-1) - (acc < 0)) >> s,
 * saturated to int8: SMMLAR gives SaturatingRoundingDoublingHighMul(acc, M) + k, the shift is
 * RoundingDivideByPOT exactly (q < 0 exactly when acc < 0). */
#define DW_REQUANT(a) ((int8_t)EC_SSAT8((ec_smmlar((a), m, k) + ((a) >> 31)) >> s))

/* One tap of four channels c..c+3: the input offset is added to the sign-extended halves (SADD16),
 * so padded taps are simply skipped (the depthwise bias is not folded). */
#define EC_DW_TAP(xp, wp)                                                                             \
    do {                                                                                          \
        const uint32_t xv_ = ec_load32(xp), wv_ = ec_load32(wp);                                        \
        const uint32_t xe_ = EC_SADD16(EC_SXTB16(xv_), off2), xo_ = EC_SADD16(EC_SXTB16_ROR8(xv_), off2); \
        const uint32_t we_ = EC_SXTB16(wv_), wo_ = EC_SXTB16_ROR8(wv_);                           \
        a0 = EC_SMLABB(xe_, we_, a0); /* channel c */                                             \
        a2 = EC_SMLATT(xe_, we_, a2); /* c + 2 */                                                 \
        a1 = EC_SMLABB(xo_, wo_, a1); /* c + 1 */                                                 \
        a3 = EC_SMLATT(xo_, wo_, a3); /* c + 3 */                                                 \
    } while (0)

/* Channels c.. of one output pixel one at a time (the channels left over by dw_pixel) */
static EC_NOINLINE void dw_rest(const ec_conv_params_t *p, const int8_t *x, const int8_t *w, const int32_t *bias, int32_t rows,
                    int32_t cols, int32_t x_row, int8_t *d, const int8_t *s, int32_t c)
{
    const int32_t c_n = p->in_c;
    const int32_t x_col = p->dilation_w * c_n;
    const int32_t w_row = p->kernel_w * c_n;
    for (; c < c_n; c++) {
        int32_t acc = bias != NULL ? bias[c] : 0;
        for (int32_t r = 0; r < rows; r++)
            for (int32_t k = 0; k < cols; k++)
                acc += (x[r * x_row + k * x_col + c] + p->input_offset) * w[r * w_row + k * c_n + c];
        d[c] = ec_conv_out_fast(p, acc, c, s != NULL ? s + c : NULL);
    }
}

/* All channels of one output pixel (depth multiplier 1) over its clipped window of rows x cols
 * taps: x, w point at the window's first valid tap; four channels at a time, a full 3x3 window
 * unrolled; then the epilogue. */
static EC_HOT void dw_pixel(const ec_conv_params_t *p, const int8_t *x, const int8_t *w, const int32_t *bias,
                            int32_t rows, int32_t cols, int32_t x_row, int8_t *d, const int8_t *s)
{
    const int32_t c_n = p->in_c;
    const int32_t x_col = p->dilation_w * c_n;
    const int32_t w_row = p->kernel_w * c_n;
    const int32_t off = p->input_offset;
    const uint32_t off2 = ((uint32_t)off & 0xffffu) | ((uint32_t)off << 16);
    const int full3 = rows == 3 && cols == 3 && p->kernel_w == 3;
    const int32_t x_next = x_row - 2 * x_col;
    int32_t c = 0;
    for (; c + 4 <= c_n; c += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (bias != NULL) {
            a0 = bias[c];
            a1 = bias[c + 1];
            a2 = bias[c + 2];
            a3 = bias[c + 3];
        }
        if (full3) {
            /* the nine weights of a channel are c_n apart; the input steps a column, a column, then
             * to the next row */
            const int8_t *xp = x + c;
            const int8_t *wp = w + c;
            for (int32_t r = 0; r < 3; r++) {
                EC_DW_TAP(xp, wp);
                xp += x_col;
                wp += c_n;
                EC_DW_TAP(xp, wp);
                xp += x_col;
                wp += c_n;
                EC_DW_TAP(xp, wp);
                xp += x_next;
                wp += c_n;
            }
        } else {
            const int8_t *xr = x + c;
            const int8_t *wr = w + c;
            for (int32_t r = 0; r < rows; r++) {
                const int8_t *xp = xr;
                const int8_t *wp = wr;
                for (int32_t k = 0; k < cols; k++) {
                    EC_DW_TAP(xp, wp);
                    xp += x_col;
                    wp += c_n;
                }
                xr += x_row;
                wr += w_row;
            }
        }
        const int8_t *sc = s != NULL ? s + c : NULL;
        d[c] = ec_conv_out_fast(p, a0, c, sc);
        d[c + 1] = ec_conv_out_fast(p, a1, c + 1, sc != NULL ? sc + 1 : NULL);
        d[c + 2] = ec_conv_out_fast(p, a2, c + 2, sc != NULL ? sc + 2 : NULL);
        d[c + 3] = ec_conv_out_fast(p, a3, c + 3, sc != NULL ? sc + 3 : NULL);
    }
    if (c < c_n)
        dw_rest(p, x, w, bias, rows, cols, x_row, d, s, c);
}

/* Fast path: 3x3, stride 1, dilation 1, padding <= 1, no fused residual, every channel's
 * requantization a right shift (dw_requant_ok).  Per tile of EC_DW_TILE output columns, pair of
 * channels (c, c + 1) and strip of at most EC_DW_STRIP output rows from oy0, dw_pairs first turns
 * the strip's input into int16 pairs (input + input_offset; 0 in the padding) of two rows:
 * pair i = (R[2 i], R[2 i + 1]), R[r] the input row oy0 - pad_top + r, for each input column of
 * the tile and each of the two channels (a column's pairs one after the other).  Output rows
 * oy0 + 4 b .. + 3 read the pairs A = 2 b, B = 2 b + 1, C = 2 b + 2; with the weight pairs
 * P = (2 w0, 2 w1), Q = (2 w1, 2 w2) of each kernel column (w0..w2 its rows):
 *   row 4 b:     SMLAD(A, P) + B.lo * Q.hi      row 4 b + 1:  A.hi * P.lo + SMLAD(B, Q)
 *   row 4 b + 2: SMLAD(B, P) + C.lo * Q.hi      row 4 b + 3:  B.hi * P.lo + SMLAD(C, Q)
 * so 6 multiply instructions an output for the 9 taps, accumulating 2 * acc (exactly), then
 * DW_REQUANT.  dw_chan does one channel of a strip: blocks of 4 rows x 1 column along a block row,
 * then the next block row, the channel's weights and requantization loaded once a block from its
 * own frame.  A last block row of fewer than 4 rows computes 4 and stores the rows past the end
 * onto the last row (in the order 3, 2, 1, 0, so that its own value is stored last).
 * In place (output row r exactly on input row r - pad_top, one tile of columns): a pair of
 * channels has read all its input rows of a strip (into the pairs) before it writes, it writes
 * only its own channels, on input rows before oy0 + EC_DW_STRIP - pad_top, where the next strip
 * starts reading.  The scratch (the pairs) is the scratch row when it is large enough, else on the
 * stack. */
#define EC_DW_TILE 5
#define EC_DW_COLS (EC_DW_TILE + 2)
#define EC_DW_STRIP 28                            /* output rows a strip at most (a multiple of 4) */
#define EC_DW_NP (EC_DW_STRIP / 2 + 1)            /* pairs a column: 15 */
#define EC_DW_CS (4 * EC_DW_NP)                   /* bytes from a column's pairs to the next's: 60 */
#define EC_DW_SCRATCH (2 * EC_DW_COLS * EC_DW_NP) /* words (840 bytes) */

/* Two bytes from any address (LDRH) */
EC_INLINE uint32_t dw_load16(const int8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* One channel of a strip (dw_chan); the assembly reads it at the byte offsets in the comments */
typedef struct {
    uint32_t w[6];      /*  0: the weight pairs P0 P1 P2 Q0 Q1 Q2 of the kernel columns */
    int32_t bias2;      /* 24: 2 bias */
    int32_t m, k, s;    /* 28: the requantization (DW_REQUANT) */
    int32_t off[3];     /* 40: rows 1, 2, 3 of a block from row 0 */
    int32_t toff[3];    /* 52: the same in the last block row (rows past the end: the last row) */
    int32_t cn;         /* 64: from an output column to the next */
    const uint32_t *d;  /* 68: the pairs of the first column, pair 0 */
    int8_t *o;          /* 72: output row oy0, the tile's first column, the channel */
    int32_t n, nb;      /* 76: output columns, block rows */
    int32_t ostep;      /* 84: from the end of a block row to the start of the next (4 rl - n cn) */
    int32_t tail2;      /* 88: the last block row has 1 or 2 rows (it computes 2, else 4) */
} dw_chan_t;

#if DW_ASM
_Static_assert(sizeof(dw_chan_t) == 92 && EC_DW_CS == 60, "dw_chan's assembly reads these offsets");

/* r0: the pairs (column x, pair 2 b); r1-r4: the sums of rows 0-3; r5, r6, r7: M, k, s; r8: the
 * output (row 4 b, column x); r9, r10: a kernel column's weight pairs P, Q (then the row offsets);
 * r11, r12, lr: the pairs A, B, C of a column.  The channel's dw_chan_t is copied to the frame
 * (sp + 0..91; the tail offsets over the others in the last block row), sp + 92: the end of the
 * block row. */
static __attribute__((naked, noinline)) void dw_chan(const dw_chan_t *blk EC_UNUSED)
{
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "sub sp, sp, #96\n\t"
        "ldm r0!, {r1-r12}\n\t"
        "stm sp, {r1-r12}\n\t"
        "ldm r0, {r1-r11}\n\t"
        "add r12, sp, #48\n\t"
        "stm r12, {r1-r11}\n\t"
        "mov r0, r6\n\t"
        "ldr r5, [sp, #28]\n\t"
        "ldr r6, [sp, #32]\n\t"
        "ldr r7, [sp, #36]\n\t"
        "ldr r8, [sp, #72]\n\t"
        "4:\n\t" /* a block row: where it ends; the last one takes the tail offsets */
        "ldr r2, [sp, #76]\n\t"
        "movs r1, #60\n\t"
        "mla r1, r2, r1, r0\n\t"
        "str r1, [sp, #92]\n\t"
        "ldr r1, [sp, #80]\n\t"
        "cmp r1, #1\n\t"
        "bne 1f\n\t"
        "ldr r2, [sp, #52]\n\t"
        "ldr r3, [sp, #56]\n\t"
        "ldr r4, [sp, #60]\n\t"
        "str r2, [sp, #40]\n\t"
        "str r3, [sp, #44]\n\t"
        "str r4, [sp, #48]\n\t"
        "ldr r1, [sp, #88]\n\t"
        "cmp r1, #0\n\t"
        "bne 2f\n\t"
        "1:\n\t" /* a block of 4 rows: kernel column 0's weights, column x's pairs, 2 bias */
        "ldr r9, [sp]\n\t"
        "ldr r10, [sp, #12]\n\t"
        "ldr r11, [r0]\n\t"
        "ldr r12, [r0, #4]\n\t"
        "ldr lr, [r0, #8]\n\t"
        "ldr r2, [sp, #24]\n\t"
        "smlad r1, r11, r9, r2\n\t"
        "smlad r3, r12, r9, r2\n\t"
        "smlatb r4, r12, r9, r2\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "smlabt r3, lr, r10, r3\n\t"
        "smlad r4, lr, r10, r4\n\t"
        "ldr r9, [sp, #4]\n\t" /* kernel column 1, column x + 1 */
        "ldr r10, [sp, #16]\n\t"
        "ldr r11, [r0, #60]\n\t"
        "ldr r12, [r0, #64]\n\t"
        "ldr lr, [r0, #68]\n\t"
        "smlad r1, r11, r9, r1\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlad r3, r12, r9, r3\n\t"
        "smlatb r4, r12, r9, r4\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "smlabt r3, lr, r10, r3\n\t"
        "smlad r4, lr, r10, r4\n\t"
        "ldr r9, [sp, #8]\n\t" /* kernel column 2, column x + 2 */
        "ldr r10, [sp, #20]\n\t"
        "ldr r11, [r0, #120]\n\t"
        "ldr r12, [r0, #124]\n\t"
        "ldr lr, [r0, #128]\n\t"
        "smlad r1, r11, r9, r1\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlad r3, r12, r9, r3\n\t"
        "smlatb r4, r12, r9, r4\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "smlabt r3, lr, r10, r3\n\t"
        "smlad r4, lr, r10, r4\n\t"
        "ldr r11, [sp, #48]\n\t" /* the row offsets, the end of the block row */
        "ldr r10, [sp, #44]\n\t"
        "ldr r9, [sp, #40]\n\t"
        "ldr r12, [sp, #92]\n\t"
        "smmlar lr, r4, r5, r6\n\t" /* rows 3, 2, 1, 0 */
        "add lr, lr, r4, asr #31\n\t"
        "asr lr, lr, r7\n\t"
        "ssat lr, #8, lr\n\t"
        "strb lr, [r8, r11]\n\t"
        "smmlar r4, r3, r5, r6\n\t"
        "add r4, r4, r3, asr #31\n\t"
        "asr r4, r4, r7\n\t"
        "ssat r4, #8, r4\n\t"
        "strb r4, [r8, r10]\n\t"
        "smmlar r3, r2, r5, r6\n\t"
        "add r3, r3, r2, asr #31\n\t"
        "asr r3, r3, r7\n\t"
        "ssat r3, #8, r3\n\t"
        "strb r3, [r8, r9]\n\t"
        "smmlar r2, r1, r5, r6\n\t"
        "add r2, r2, r1, asr #31\n\t"
        "asr r2, r2, r7\n\t"
        "ssat r2, #8, r2\n\t"
        "strb r2, [r8]\n\t"
        "ldr r11, [sp, #64]\n\t"
        "adds r0, r0, #60\n\t"
        "add r8, r8, r11\n\t"
        "cmp r0, r12\n\t"
        "bne 1b\n\t"
        "ldr r1, [sp, #80]\n\t" /* the next block row */
        "subs r1, r1, #1\n\t"
        "str r1, [sp, #80]\n\t"
        "beq 6f\n\t"
        "ldr r2, [sp, #76]\n\t"
        "movs r3, #60\n\t"
        "mls r0, r2, r3, r0\n\t"
        "adds r0, r0, #8\n\t"
        "ldr r3, [sp, #84]\n\t"
        "add r8, r8, r3\n\t"
        "b 4b\n\t"
        "2:\n\t" /* a last block row of 1 or 2 rows: rows 0 and 1 (A, B), row 1 stored first */
        "ldr r9, [sp]\n\t"
        "ldr r10, [sp, #12]\n\t"
        "ldr r11, [r0]\n\t"
        "ldr r12, [r0, #4]\n\t"
        "ldr r2, [sp, #24]\n\t"
        "smlad r1, r11, r9, r2\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "ldr r9, [sp, #4]\n\t"
        "ldr r10, [sp, #16]\n\t"
        "ldr r11, [r0, #60]\n\t"
        "ldr r12, [r0, #64]\n\t"
        "smlad r1, r11, r9, r1\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "ldr r9, [sp, #8]\n\t"
        "ldr r10, [sp, #20]\n\t"
        "ldr r11, [r0, #120]\n\t"
        "ldr r12, [r0, #124]\n\t"
        "smlad r1, r11, r9, r1\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "ldr r9, [sp, #40]\n\t"
        "ldr r12, [sp, #92]\n\t"
        "smmlar lr, r2, r5, r6\n\t"
        "add lr, lr, r2, asr #31\n\t"
        "asr lr, lr, r7\n\t"
        "ssat lr, #8, lr\n\t"
        "strb lr, [r8, r9]\n\t"
        "smmlar lr, r1, r5, r6\n\t"
        "add lr, lr, r1, asr #31\n\t"
        "asr lr, lr, r7\n\t"
        "ssat lr, #8, lr\n\t"
        "strb lr, [r8]\n\t"
        "ldr r11, [sp, #64]\n\t"
        "adds r0, r0, #60\n\t"
        "add r8, r8, r11\n\t"
        "cmp r0, r12\n\t"
        "bne 2b\n\t"
        "6:\n\t"
        "add sp, sp, #96\n\t"
        "pop {r4-r11, pc}\n\t");
}
#else
/* What the assembly does */
static void dw_chan(const dw_chan_t *blk)
{
    const uint32_t p0 = blk->w[0], p1 = blk->w[1], p2 = blk->w[2], q0 = blk->w[3], q1 = blk->w[4], q2 = blk->w[5];
    const int32_t m = blk->m, k = blk->k, s = blk->s, cn = blk->cn;
    const uint32_t *e = blk->d;
    int8_t *o = blk->o;
    for (int32_t b = blk->nb; b > 0; b--, e += 2 - blk->n * EC_DW_NP, o += blk->ostep) {
        const int32_t *off = b == 1 ? blk->toff : blk->off;
        for (int32_t x = 0; x < blk->n; x++, e += EC_DW_NP, o += cn) {
            const uint32_t *f = e + EC_DW_NP, *g = f + EC_DW_NP;
            if (b == 1 && blk->tail2) {
                int32_t r0 = EC_SMLAD(e[0], p0, blk->bias2), r1 = EC_SMLATB(e[0], p0, blk->bias2);
                r0 = EC_SMLABT(e[1], q0, r0);
                r1 = EC_SMLAD(e[1], q0, r1);
                r0 = EC_SMLAD(f[0], p1, r0);
                r1 = EC_SMLATB(f[0], p1, r1);
                r0 = EC_SMLABT(f[1], q1, r0);
                r1 = EC_SMLAD(f[1], q1, r1);
                r0 = EC_SMLAD(g[0], p2, r0);
                r1 = EC_SMLATB(g[0], p2, r1);
                r0 = EC_SMLABT(g[1], q2, r0);
                r1 = EC_SMLAD(g[1], q2, r1);
                o[off[0]] = DW_REQUANT(r1);
                o[0] = DW_REQUANT(r0);
                continue;
            }
            int32_t a0 = EC_SMLAD(e[0], p0, blk->bias2), a1 = EC_SMLATB(e[0], p0, blk->bias2);
            int32_t a2 = EC_SMLAD(e[1], p0, blk->bias2), a3 = EC_SMLATB(e[1], p0, blk->bias2);
            a0 = EC_SMLABT(e[1], q0, a0);
            a1 = EC_SMLAD(e[1], q0, a1);
            a2 = EC_SMLABT(e[2], q0, a2);
            a3 = EC_SMLAD(e[2], q0, a3);
            a0 = EC_SMLAD(f[0], p1, a0);
            a1 = EC_SMLATB(f[0], p1, a1);
            a2 = EC_SMLAD(f[1], p1, a2);
            a3 = EC_SMLATB(f[1], p1, a3);
            a0 = EC_SMLABT(f[1], q1, a0);
            a1 = EC_SMLAD(f[1], q1, a1);
            a2 = EC_SMLABT(f[2], q1, a2);
            a3 = EC_SMLAD(f[2], q1, a3);
            a0 = EC_SMLAD(g[0], p2, a0);
            a1 = EC_SMLATB(g[0], p2, a1);
            a2 = EC_SMLAD(g[1], p2, a2);
            a3 = EC_SMLATB(g[1], p2, a3);
            a0 = EC_SMLABT(g[1], q2, a0);
            a1 = EC_SMLAD(g[1], q2, a1);
            a2 = EC_SMLABT(g[2], q2, a2);
            a3 = EC_SMLAD(g[2], q2, a3);
            o[off[2]] = DW_REQUANT(a3);
            o[off[1]] = DW_REQUANT(a2);
            o[off[0]] = DW_REQUANT(a1);
            o[0] = DW_REQUANT(a0);
        }
    }
}
#endif

/* The int16 pairs of a strip (see above) of channels c, c + 1 into buf (channel c + 1 at
 * EC_DW_COLS * EC_DW_NP words): buffer columns k0..k1 - 1 from input column q (channel c, row 0)
 * on, pairs 0..np - 1 of input rows r0 + 2 i, r0 + 2 i + 1 (0 outside rows 0..in_h - 1, where the
 * input offset is not added either: r0 >= -1, so only pair 0 can start above the input). */
static EC_HOT void dw_pairs(uint32_t *buf, const int8_t *q, int32_t k0, int32_t k1, int32_t cn, int32_t in_row,
                            int32_t in_h, int32_t r0, int32_t np, uint32_t off2)
{
    /* pairs ilo..ihi - 1 have both rows inside the input; pair ihi its first row only when
     * `half`; the pairs after it none */
    const int32_t ilo = r0 < 0 ? 1 : 0;
    int32_t ihi = in_h - 2 - r0 >= 0 ? (in_h - 2 - r0) / 2 + 1 : 0;
    if (ihi > np)
        ihi = np;
    if (ihi < ilo)
        ihi = ilo;
    const int half = ihi < np && r0 + 2 * ihi == in_h - 1;
    const int32_t n2 = (ihi - ilo) / 2, zero0 = ihi + half;
    /* the pairs with both rows inside, two at a time (rows x, x + 1 | x + 2, x + 3), all columns */
    const int8_t *x = q + k0 * cn + (r0 + 2 * ilo) * in_row;
    uint32_t *d = buf + k0 * EC_DW_NP + ilo;
#if DW_ASM
    if (n2 > 0 && k1 > k0) {
        /* n2, from the end of a column to the next (input, pairs), columns */
        int32_t st[4] = {n2, cn - 4 * n2 * in_row, EC_DW_CS - 8 * n2, k1 - k0};
        const int8_t *x2 = x + 2 * in_row;
        uint32_t a, b, c, e;
        int32_t cnt;
        _Static_assert(EC_DW_COLS * EC_DW_NP * 4 == 420, "dw_pairs' assembly: channel c + 1's pairs 420 bytes on");
        __asm__ volatile("2:\n\t"
                         "ldr %[n], [%[st]]\n\t"
                         "1:\n\t"
                         "ldrh %[a], [%[x]]\n\t"
                         "ldrh %[b], [%[x], %[r1]]\n\t"
                         "ldrh %[c], [%[x2]]\n\t"
                         "ldrh %[e], [%[x2], %[r1]]\n\t"
                         "pkhbt %[a], %[a], %[b], lsl #16\n\t"
                         "pkhbt %[c], %[c], %[e], lsl #16\n\t"
                         "sxtab16 %[b], %[off], %[a]\n\t"
                         "sxtab16 %[a], %[off], %[a], ror #8\n\t"
                         "sxtab16 %[e], %[off], %[c]\n\t"
                         "sxtab16 %[c], %[off], %[c], ror #8\n\t"
                         "str %[a], [%[d], #420]\n\t"
                         "str %[c], [%[d], #424]\n\t"
                         "str %[e], [%[d], #4]\n\t"
                         "str %[b], [%[d]], #8\n\t"
                         "add %[x], %[x], %[r4]\n\t"
                         "add %[x2], %[x2], %[r4]\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b\n\t"
                         "ldr %[a], [%[st], #4]\n\t"
                         "ldr %[b], [%[st], #8]\n\t"
                         "ldr %[c], [%[st], #12]\n\t"
                         "add %[x], %[x], %[a]\n\t"
                         "add %[x2], %[x2], %[a]\n\t"
                         "add %[d], %[d], %[b]\n\t"
                         "subs %[c], %[c], #1\n\t"
                         "str %[c], [%[st], #12]\n\t"
                         "bne 2b"
                         : [x] "+r"(x), [x2] "+r"(x2), [d] "+r"(d), [n] "=&r"(cnt), [a] "=&r"(a), [b] "=&r"(b),
                           [c] "=&r"(c), [e] "=&r"(e)
                         : [r1] "r"(in_row), [r4] "r"(4 * in_row), [off] "r"(off2), [st] "r"(st)
                         : "cc", "memory");
    }
#else
    for (int32_t k = k0; k < k1; k++, x += cn, d += EC_DW_NP) {
        for (int32_t i = 0; i < n2; i++) {
            const int8_t *const y = x + 4 * i * in_row;
            const uint32_t t = ec_pkhbt(dw_load16(y), dw_load16(y + in_row));
            const uint32_t u = ec_pkhbt(dw_load16(y + 2 * in_row), dw_load16(y + 3 * in_row));
            d[2 * i] = EC_SXTAB16(off2, t);
            d[EC_DW_COLS * EC_DW_NP + 2 * i] = EC_SXTAB16_ROR8(off2, t);
            d[2 * i + 1] = EC_SXTAB16(off2, u);
            d[EC_DW_COLS * EC_DW_NP + 2 * i + 1] = EC_SXTAB16_ROR8(off2, u);
        }
    }
#endif
    for (int32_t k = k0; k < k1; k++) {
        const int8_t *const col = q + k * cn;
        uint32_t *const d0 = buf + k * EC_DW_NP, *const d1 = d0 + EC_DW_COLS * EC_DW_NP;
        if (ilo > 0) { /* rows -1, 0 */
            const uint32_t t = dw_load16(col) << 16;
            d0[0] = EC_SXTAB16(off2, t) & 0xffff0000u;
            d1[0] = EC_SXTAB16_ROR8(off2, t) & 0xffff0000u;
        }
        if ((ihi - ilo) & 1) { /* the last pair with both rows inside */
            const int8_t *const y = col + (r0 + 2 * ihi - 2) * in_row;
            const uint32_t t = ec_pkhbt(dw_load16(y), dw_load16(y + in_row));
            d0[ihi - 1] = EC_SXTAB16(off2, t);
            d1[ihi - 1] = EC_SXTAB16_ROR8(off2, t);
        }
        if (half) { /* rows in_h - 1, in_h */
            const uint32_t t = dw_load16(col + (in_h - 1) * in_row);
            d0[ihi] = EC_SXTAB16(off2, t) & 0xffffu;
            d1[ihi] = EC_SXTAB16_ROR8(off2, t) & 0xffffu;
        }
        for (int32_t i = zero0; i < np; i++)
            d0[i] = d1[i] = 0;
    }
}

/* Whether the fast path takes the layer: the shape, the requantization, and in place (the output
 * overlapping the input) output row r exactly on input row r - pad_top and one tile of columns. */
static int dw_fast_ok(const ec_conv_params_t *p, const int8_t *input, const int32_t *bias, const int8_t *output,
                      const int8_t *skip)
{
    const int32_t pb = p->out_h + 2 - p->pad_top - p->in_h, pr = p->out_w + 2 - p->pad_left - p->in_w;
    const int32_t in_row = p->in_w * p->in_c, rl = p->out_w * p->in_c;
    const int overlap = (uintptr_t)output < (uintptr_t)(input + p->batches * p->in_h * in_row) &&
                        (uintptr_t)input < (uintptr_t)(output + p->batches * p->out_h * rl);
    return skip == NULL && p->kernel_h == 3 && p->kernel_w == 3 && p->stride_h == 1 && p->stride_w == 1 &&
           p->dilation_h == 1 && p->dilation_w == 1 && p->in_c >= 2 && p->out_c == p->in_c &&
           (uint32_t)p->pad_top <= 1u && (uint32_t)p->pad_left <= 1u && (uint32_t)pb <= 1u && (uint32_t)pr <= 1u &&
           (!overlap || (p->batches == 1 && in_row == rl && p->out_w <= EC_DW_TILE &&
                         (uintptr_t)input - (uintptr_t)output == (uintptr_t)(p->pad_top * in_row))) &&
           dw_requant_ok(p, bias);
}


/* The fast path (one batch, dw_fast_ok), see above; buf: EC_DW_SCRATCH words. */
static EC_HOT void dw_fast(const ec_conv_params_t *p, const int8_t *in_b, const int8_t *filter, const int32_t *bias,
                           int8_t *out_b, uint32_t *buf)
{
    const int32_t cn = p->in_c, pt = p->pad_top, oh = p->out_h;
    const int32_t rl = p->out_w * cn, in_row = p->in_w * cn;
    const uint32_t off2 = ((uint32_t)p->input_offset & 0xffffu) | ((uint32_t)p->input_offset << 16);
    dw_chan_t ch[2];
    for (int32_t x0 = 0; x0 < p->out_w; x0 += EC_DW_TILE) {
        /* the input columns ix .. ix + n + 1: at most one padding column each side (its pairs 0) */
        const int32_t n = p->out_w - x0 < EC_DW_TILE ? p->out_w - x0 : EC_DW_TILE;
        const int32_t ix = x0 - p->pad_left, ncol = n + 2;
        const int32_t k0 = ix < 0 ? 1 : 0, k1 = p->in_w - ix < ncol ? p->in_w - ix : ncol;
        for (int32_t k = 0; k < ncol; k++)
            if (k < k0 || k >= k1)
                for (int32_t i = 0; i < EC_DW_NP; i++)
                    buf[k * EC_DW_NP + i] = buf[(EC_DW_COLS + k) * EC_DW_NP + i] = 0;
        for (int32_t oy0 = 0; oy0 < oh; oy0 += EC_DW_STRIP) {
            /* the strip's geometry, the same for every channel */
            const int32_t rows = oh - oy0 < EC_DW_STRIP ? oh - oy0 : EC_DW_STRIP;
            const int32_t nb = (rows + 3) / 4, last = rows - 4 * (nb - 1) - 1; /* the last row of the last block */
            for (int32_t j = 0; j < 2; j++) {
                dw_chan_t *const b = &ch[j];
                for (int32_t r = 0; r < 3; r++) {
                    b->off[r] = (r + 1) * rl;
                    b->toff[r] = (r + 1 < last ? r + 1 : last) * rl;
                }
                b->tail2 = last <= 1;
                b->cn = cn;
                b->n = n;
                b->nb = nb;
                b->ostep = 4 * rl - n * cn;
                b->d = buf + j * EC_DW_COLS * EC_DW_NP;
            }
            int8_t *const o = out_b + oy0 * rl + x0 * cn;
            const int8_t *const q = in_b + ix * cn;
            /* two channels at a time (the last pair of an odd count overlaps the one before: only
             * its new channel) */
            for (int32_t c = 0; c < cn; c += 2) {
                const int32_t cg = c + 2 <= cn ? c : cn - 2;
                const int8_t *f = filter + cg;
                uint32_t h[9];
                for (int32_t i = 0; i < 9; i++, f += cn)
                    h[i] = dw_load16(f);
                for (int32_t i = 0; i < 6; i++) {
                    /* (w0 of c, of c + 1, w1 of c, of c + 1) -> (2 w0, 2 w1) of c, of c + 1 */
                    const uint32_t t = ec_pkhbt(h[i], h[i + 3]);
                    ch[0].w[i] = EC_SXTAB16(EC_SXTB16(t), t);
                    ch[1].w[i] = EC_SXTAB16_ROR8(EC_SXTB16_ROR8(t), t);
                }
                dw_pairs(buf, q + cg, k0, k1, cn, in_row, p->in_h, oy0 - pt, 2 * nb + 1, off2);
                for (int32_t j = c - cg; j < 2; j++) {
                    const int32_t sh = p->shift[cg + j];
                    dw_chan_t *const b = &ch[j];
                    b->bias2 = bias != NULL ? (int32_t)((uint32_t)bias[cg + j] << 1) : 0;
                    b->m = p->multiplier[cg + j];
                    b->k = (int32_t)((uint32_t)(2 * p->output_offset + 1) << ~sh); /* zp 2^s + 2^(s-1) */
                    b->s = -sh;
                    b->o = o + cg + j;
                    dw_chan(b);
                }
            }
        }
    }
    if (p->act_min > -128 || p->act_max < 127)
        for (int8_t *o = out_b, *end = out_b + oh * rl; o < end; o++)
            *o = (int8_t)ec_clip_i32(*o, p->act_min, p->act_max);
}

/* dw_fast with the scratch on the stack */
static EC_NOINLINE void dw_fast_stack(const ec_conv_params_t *p, const int8_t *in_b, const int8_t *filter, const int32_t *bias,
                          int8_t *out_b)
{
    uint32_t buf[EC_DW_SCRATCH];
    dw_fast(p, in_b, filter, bias, out_b, buf);
}

/* The general kernel: any shape, depth multiplier 1 */
static EC_NOINLINE void dw_general(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                       int8_t *output, int8_t *row, const int8_t *skip)
{
    const int32_t c_n = p->in_c;
    const int32_t row_len = p->out_w * c_n;
    const int32_t x_row = p->dilation_h * p->in_w * c_n;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * c_n;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int8_t *sk = skip != NULL ? skip + out_row : NULL;
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ec_tap_range(in_y0, p->dilation_h, p->kernel_h, p->in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                ec_tap_range(in_x0, p->dilation_w, p->kernel_w, p->in_w, &kx0, &kx1);
                const int8_t *x = in_b + ((in_y0 + ky0 * p->dilation_h) * p->in_w + in_x0 + kx0 * p->dilation_w) * c_n;
                const int8_t *w = filter + (ky0 * p->kernel_w + kx0) * c_n;
                dw_pixel(p, x, w, bias, ky1 - ky0, kx1 - kx0, x_row, dst + ox * c_n,
                         sk != NULL ? sk + ox * c_n : NULL);
            }
            if (row != NULL)
                memcpy(output + out_row, row, (size_t)row_len);
        }
    }
}

static void dw_fast_batches(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output, int8_t *row);

/* The fast path alone (the generator checked its conditions, dw_fast_ok): the general code is not
 * linked.  Host debug builds check the generator's decision. */
void ec_depthwise_conv2d_s8_dsp3x3(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                   const int32_t *bias, int8_t *output, int8_t *row)
{
#if defined(EC_DEBUG)
    if (!dw_fast_ok(p, input, bias, output, NULL))
        __builtin_trap();
#endif
    dw_fast_batches(p, input, filter, bias, output, row);
}

/* The fast path over the batches; the scratch row as the scratch when it is large enough (and
 * word-aligned). */
static void dw_fast_batches(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output, int8_t *row)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * p->in_c;
        int8_t *out_b = output + b * p->out_h * p->out_w * p->in_c;
        if (row != NULL && ((uintptr_t)row & 3u) == 0 && p->out_w * p->in_c >= 4 * EC_DW_SCRATCH)
            dw_fast(p, in_b, filter, bias, out_b, (uint32_t *)(void *)row);
        else
            dw_fast_stack(p, in_b, filter, bias, out_b);
    }
}

/* Stride 2 (MobileNet's down-sampling depthwise layers): 3x3, dilation 1, padding <= 1, no
 * fused residual, dw_requant_ok.  Per output row and pair of channels (c, c + 1), along the row:
 * input rows R0, R1 as int16 pairs A = (R0, R1) of each input column and channel (input +
 * input_offset; a padding row masked to 0), row R2 as pairs of two adjacent columns
 * (R2[x], R2[x + 1]), with the weights doubled (the sums are 2 acc, as DW_REQUANT takes them):
 *   out = SMLAD(A[x0], P0) + SMLAD(A[x0 + 1], P1) + SMLAD(A[x0 + 2], P2)
 *       + SMLAD(R2 pair (x0, x0 + 1), (w2[0], w2[1])) + R2[x0 + 2] * w2[2]
 * so 5 multiplies an output, and each output builds two new columns (x0 + 1, x0 + 2; x0 was the
 * previous one's x0 + 2).  Columns outside the input are 0. */
#if defined(EC_DEBUG) /* the generator decides (c_codegen.dw_s2_ok); debug builds check it */
static int dw_s2_ok(const ec_conv_params_t *p, const int32_t *bias, const int8_t *skip)
{
    return skip == NULL && p->kernel_h == 3 && p->kernel_w == 3 && p->stride_h == 2 && p->stride_w == 2 &&
           p->dilation_h == 1 && p->dilation_w == 1 && p->pad_top <= 1 && p->pad_left <= 1 && p->in_c >= 2 &&
           p->depth_multiplier == 1 && dw_requant_ok(p, bias);
}
#endif

/* The int16 pairs of input column x for channels c, c + 1: rows (R0, R1) of each channel, masked
 * (`edge`: x may be outside the input, then 0) */
EC_INLINE void dw_s2_col(const int8_t *q0, const int8_t *q1, int32_t x, int32_t in_w, int32_t c_n, uint32_t off2,
                         uint32_t m01, uint32_t *ac, uint32_t *ac1, int edge)
{
    if (edge && (x < 0 || x >= in_w)) {
        *ac = *ac1 = 0;
        return;
    }
    const uint32_t t = ec_pkhbt(dw_load16(q0 + x * c_n), dw_load16(q1 + x * c_n));
    *ac = EC_SXTAB16(off2, t) & m01;
    *ac1 = EC_SXTAB16_ROR8(off2, t) & m01;
}

/* Row R2 at columns x, x + 1 for channels c, c + 1: (R2c[x], R2c[x + 1]), (R2c1[x], R2c1[x + 1]) */
EC_INLINE void dw_s2_r2(const int8_t *q2, int32_t x, int32_t in_w, int32_t c_n, uint32_t off2, uint32_t m2,
                        uint32_t *bc, uint32_t *bc1, int edge)
{
    if (edge) {
        const int v0 = x >= 0 && x < in_w, v1 = x + 1 >= 0 && x + 1 < in_w;
        const uint32_t t = ec_pkhbt(v0 ? dw_load16(q2 + x * c_n) : 0, v1 ? dw_load16(q2 + (x + 1) * c_n) : 0);
        /* a column outside the input: 0, its offset not added either */
        const uint32_t mx = m2 & ((v0 ? 0xffffu : 0) | (v1 ? 0xffff0000u : 0));
        *bc = EC_SXTAB16(off2, t) & mx;
        *bc1 = EC_SXTAB16_ROR8(off2, t) & mx;
        return;
    }
    const uint32_t t = ec_pkhbt(dw_load16(q2 + x * c_n), dw_load16(q2 + (x + 1) * c_n));
    *bc = EC_SXTAB16(off2, t) & m2;
    *bc1 = EC_SXTAB16_ROR8(off2, t) & m2;
}

/* (2 w[ky0][kx], 2 w[ky1][kx]) of channel c, as int16 halves */
EC_INLINE uint32_t dw_s2_wpair(const int8_t *f, int32_t c_n, int32_t i0, int32_t i1, int32_t c)
{
    return ((uint32_t)(2 * f[i0 * c_n + c]) & 0xffffu) | ((uint32_t)(2 * f[i1 * c_n + c]) << 16);
}

/* A pair of channels' weights (doubled) and requantization */
typedef struct {
    uint32_t pc[3], pc1[3], w2c, w2c1, w22;
    int32_t b0, b1, m0, m1, k0, k1, s0, s1;
} dw_s2_ch_t;

/* Column x0 of the next output (the previous output's x0 + 2), both channels */
typedef struct {
    uint32_t a0c, a0c1, bc, bc1;
} dw_s2_state_t;

/* Channels c, c + 1: the weights of each kernel column as (2 w[0][kx], 2 w[1][kx]) per channel,
 * row 2's first two as (2 w[2][0], 2 w[2][1]), its last of both channels, and the requantization */
EC_INLINE dw_s2_ch_t dw_s2_channels(const ec_conv_params_t *p, const int8_t *f, const int32_t *bias, int32_t c)
{
    const int32_t c_n = p->in_c, s0 = -p->shift[c], s1 = -p->shift[c + 1];
    const dw_s2_ch_t ch = {
        {dw_s2_wpair(f, c_n, 0, 3, c), dw_s2_wpair(f, c_n, 1, 4, c), dw_s2_wpair(f, c_n, 2, 5, c)},
        {dw_s2_wpair(f, c_n, 0, 3, c + 1), dw_s2_wpair(f, c_n, 1, 4, c + 1), dw_s2_wpair(f, c_n, 2, 5, c + 1)},
        dw_s2_wpair(f, c_n, 6, 7, c), dw_s2_wpair(f, c_n, 6, 7, c + 1),
        ((uint32_t)(2 * f[8 * c_n + c]) & 0xffffu) | ((uint32_t)(2 * f[8 * c_n + c + 1]) << 16),
        2 * (bias != NULL ? bias[c] : 0), 2 * (bias != NULL ? bias[c + 1] : 0),
        p->multiplier[c], p->multiplier[c + 1],
        (int32_t)((uint32_t)p->output_offset << s0) + (1 << (s0 - 1)),
        (int32_t)((uint32_t)p->output_offset << s1) + (1 << (s1 - 1)), s0, s1};
    return ch;
}

EC_INLINE void dw_s2_step(const ec_conv_params_t *p, const dw_s2_ch_t *ch, dw_s2_state_t *st, const int8_t *u0,
                          const int8_t *u1, const int8_t *u2, int32_t x0, uint32_t off2, uint32_t m01, uint32_t m2,
                          int8_t *d, int edge)
{
    const int32_t in_w = p->in_w, c_n = p->in_c;
    uint32_t a1c, a1c1, a2c, a2c1, nbc, nbc1;
    dw_s2_col(u0, u1, x0 + 1, in_w, c_n, off2, m01, &a1c, &a1c1, edge);
    dw_s2_col(u0, u1, x0 + 2, in_w, c_n, off2, m01, &a2c, &a2c1, edge);
    dw_s2_r2(u2, x0 + 2, in_w, c_n, off2, m2, &nbc, &nbc1, edge);
    int32_t v0 = EC_SMLAD(st->a0c, ch->pc[0], ch->b0), v1 = EC_SMLAD(st->a0c1, ch->pc1[0], ch->b1);
    v0 = EC_SMLAD(a1c, ch->pc[1], v0);
    v1 = EC_SMLAD(a1c1, ch->pc1[1], v1);
    v0 = EC_SMLAD(a2c, ch->pc[2], v0);
    v1 = EC_SMLAD(a2c1, ch->pc1[2], v1);
    v0 = EC_SMLAD(st->bc, ch->w2c, v0);
    v1 = EC_SMLAD(st->bc1, ch->w2c1, v1);
    v0 = EC_SMLABB(nbc, ch->w22, v0);
    v1 = EC_SMLABT(nbc1, ch->w22, v1);
    {
        const int32_t m = ch->m0, k = ch->k0, s = ch->s0;
        d[0] = (int8_t)ec_clip_i32(DW_REQUANT(v0), p->act_min, p->act_max);
    }
    {
        const int32_t m = ch->m1, k = ch->k1, s = ch->s1;
        d[1] = (int8_t)ec_clip_i32(DW_REQUANT(v1), p->act_min, p->act_max);
    }
    st->a0c = a2c;
    st->a0c1 = a2c1;
    st->bc = nbc;
    st->bc1 = nbc1;
}

static EC_HOT void dw_s2_row(const ec_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                             const int32_t *bias, int8_t *dst, int32_t oy)
{
    const int32_t c_n = p->in_c, in_w = p->in_w, in_h = p->in_h, out_w = p->out_w;
    const uint32_t off2 = ((uint32_t)p->input_offset & 0xffffu) | ((uint32_t)p->input_offset << 16);
    /* rows R0..R2 (a padding row: a valid row, masked off) */
    const int32_t r0 = 2 * oy - p->pad_top;
    const int ok0 = r0 >= 0, ok1 = r0 + 1 < in_h, ok2 = r0 + 2 < in_h;
    const int8_t *q0 = in_b + (ok0 ? r0 : r0 + 1) * in_w * c_n;
    const int8_t *q1 = in_b + (ok1 ? r0 + 1 : r0) * in_w * c_n;
    const int8_t *q2 = in_b + (ok2 ? r0 + 2 : r0 + 1) * in_w * c_n;
    const uint32_t m01 = (ok0 ? 0xffffu : 0) | (ok1 ? 0xffff0000u : 0), m2 = ok2 ? 0xffffffffu : 0;
    for (int32_t c0 = 0; c0 < c_n; c0 += 2) {
        const int32_t c = c0 + 1 < c_n ? c0 : c_n - 2; /* an odd count: the last pair overlaps */
        const dw_s2_ch_t ch = dw_s2_channels(p, filter, bias, c);
        const int8_t *u0 = q0 + c, *u1 = q1 + c, *u2 = q2 + c;
        int32_t x0 = -p->pad_left;
        dw_s2_state_t st;
        dw_s2_col(u0, u1, x0, in_w, c_n, off2, m01, &st.a0c, &st.a0c1, 1);
        dw_s2_r2(u2, x0, in_w, c_n, off2, m2, &st.bc, &st.bc1, 1);
        int8_t *d = dst + c;
        /* the outputs whose columns x0 .. x0 + 3 are all inside the input, the others checked */
        const int32_t lo = p->pad_left > 0 ? 1 : 0, hi = (in_w - 4 + p->pad_left) / 2 + 1;
        int32_t ox = 0;
        for (; ox < out_w && ox < lo; ox++, x0 += 2, d += c_n)
            dw_s2_step(p, &ch, &st, u0, u1, u2, x0, off2, m01, m2, d, 1);
        for (; ox < out_w && ox < hi; ox++, x0 += 2, d += c_n)
            dw_s2_step(p, &ch, &st, u0, u1, u2, x0, off2, m01, m2, d, 0);
        for (; ox < out_w; ox++, x0 += 2, d += c_n)
            dw_s2_step(p, &ch, &st, u0, u1, u2, x0, off2, m01, m2, d, 1);
    }
}

/* The layer: output rows into `row` first when the output overlaps the input (the row contract).
 * Reached only through ec_depthwise_conv2d_s8_dsp3x3s2 (the generator checked dw_s2_ok: other
 * models do not link it). */
void ec_depthwise_conv2d_s8_dsp3x3s2(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                     const int32_t *bias, int8_t *output, int8_t *row)
{
#if defined(EC_DEBUG)
    if (!dw_s2_ok(p, bias, NULL))
        __builtin_trap();
#endif
    const int32_t c_n = p->in_c, row_len = p->out_w * c_n;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * c_n;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            int8_t *out_row = output + (b * p->out_h + oy) * row_len;
            dw_s2_row(p, in_b, filter, bias, row != NULL ? row : out_row, oy);
            if (row != NULL)
                memcpy(out_row, row, (size_t)row_len);
        }
    }
}


void ec_depthwise_conv2d_s8_dsp(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip)
{
#if defined(EC_DEBUG)
    if (dw_fast_ok(p, input, bias, output, skip)) /* the generator should have chosen ..._dsp3x3 */
        __builtin_trap();
#endif
#if defined(EC_DEBUG)
    if (dw_s2_ok(p, bias, skip)) /* the generator should have chosen ..._dsp3x3s2 */
        __builtin_trap();
#endif
    if (dw_fast_ok(p, input, bias, output, skip))
        dw_fast_batches(p, input, filter, bias, output, row);
    else
        dw_general(p, input, filter, bias, output, row, skip);
}
