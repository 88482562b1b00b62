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
#define DW_ASM 1 /* the inner loops of dw_band in assembly */
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
 * requantization a right shift (dw_requant_ok).  Output rows go four at a time: rows oy .. oy + 3
 * read input rows R0..R5 = oy - pad_top + 0..5; columns in tiles of EC_DW_TILE.  For two channels
 * at a time, dw_band turns each input column of the tile into pairs of int16 (input +
 * input_offset; 0 in the padding) A = (R0, R1), B = (R2, R3), C = (R4, R5) per channel; with the
 * weight pairs P = (2 w0, 2 w1), Q = (2 w1, 2 w2) of each kernel column (w0..w2 its rows):
 *   row oy:     SMLAD(A, P) + B.lo * Q.hi      row oy + 1:  A.hi * P.lo + SMLAD(B, Q)
 *   row oy + 2: SMLAD(B, P) + C.lo * Q.hi      row oy + 3:  B.hi * P.lo + SMLAD(C, Q)
 * so 6 multiply instructions an output for the 9 taps, accumulating 2 * acc (exactly).
 * The outputs go straight to the output, also in place when output row r lies exactly on input
 * row r - pad_top (one tile of columns): a group of channels only overwrites the channels of
 * rows R0..R3 it has read, and later rows read R4 on.  The scratch (pairs and sums) is the
 * scratch row when there is one, else on the stack. */
#define EC_DW_TILE 5
#define EC_DW_COLS (EC_DW_TILE + 2)
#define EC_DW_SUMS (EC_DW_COLS * 6) /* the sums of an output column: 4 words this far on from its pairs */
#define EC_DW_SCRATCH (EC_DW_SUMS + 6 * EC_DW_TILE + 4) /* words */
#define EC_DW_WC 17 /* words a channel: dw_band_t.wc */


EC_INLINE void dw_zero6(uint32_t *z)
{
    z[0] = z[1] = z[2] = z[3] = z[4] = z[5] = 0;
}

/* Two bytes from any address (LDRH) */
EC_INLINE uint32_t dw_load16(const int8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* One band (rows oy..oy + 3) of one tile of a pair of channels (dw_fast). */
typedef struct {
    uint32_t *buf;       /* EC_DW_SCRATCH words: per input column, channel j: A, B, C at 3 j; the sums */
    uint32_t *wc;        /* per channel j at EC_DW_WC j: the weight pairs P0 P1 P2 Q0 Q1 Q2, 2 bias, M, k, s,
                          * then (assembly) the end of the pairs, the row pointers, steps, cn, the pairs */
    int32_t j0, n, cn;   /* the first channel of the pair to compute (1: the last, overlapping pair) */
    int32_t ncols;       /* input columns in the input (the padding columns of buf are 0) */
    uint32_t *col;       /* where they go in buf */
    uint32_t off2;       /* input_offset in both halves */
    const int8_t *q;     /* R0 at the first of those columns, channel c */
    const int32_t *so;   /* R1..R5 - R0 (a padding row: R1, its half masked off by mask) */
    uint32_t mask[3];
    int8_t *o0, *o1;     /* rows oy, oy + 1 at column x0, channel c */
    int32_t rs1, rs2;    /* rows oy + 2, oy + 3 from o1 (stored in the order oy + 3, oy + 2, oy + 1, oy:
                          * a row past the end aliases the one before it) */
} dw_band_t;

/* A band with one row inside the output (the last of a height 4 k + 1): row oy alone, its six
 * multiplies an output (SMLAD(A, P) + B.lo * Q.hi per kernel column) and the requantization, where
 * dw_band would compute and store four (DS-CNN: 25 rows, the last band 1 of 4). */
EC_INLINE void dw_row1(const uint32_t *wj, const uint32_t *d, const uint32_t *dend, int8_t *u0, int32_t cn)
{
    /* (the weights read again each output: few registers, so that its frame stays small) */
    const int32_t acc0 = (int32_t)wj[6], m = (int32_t)wj[7], k = (int32_t)wj[8], s = (int32_t)wj[9];
    for (; d != dend; d += 6, u0 += cn) {
        int32_t a = EC_SMLAD(d[0], wj[0], acc0);
        a = EC_SMLABT(d[1], wj[3], a);
        a = EC_SMLAD(d[6], wj[1], a);
        a = EC_SMLABT(d[7], wj[4], a);
        a = EC_SMLAD(d[12], wj[2], a);
        a = EC_SMLABT(d[13], wj[5], a);
        *u0 = DW_REQUANT(a);
    }
}

/* The int16 pairs of one band's input columns into b->buf (dw_band, dw_band1) */
EC_INLINE void dw_pairs(const dw_band_t *b)
{
    const int32_t cn = b->cn;
        const uint32_t off2 = b->off2;
        const int8_t *q = b->q;
        const int32_t *so = b->so;
        const int32_t s1 = so[0], s2 = so[1], s3 = so[2], s4 = so[3], s5 = so[4];
        uint32_t *d = b->col;
        const uint32_t m0 = b->mask[0], m1 = b->mask[1], m2 = b->mask[2];
        if ((m0 & m1 & m2) == 0xffffffffu)
            for (int32_t k = b->ncols; k > 0; k--, q += cn, d += 6) {
                /* channels c, c + 1 of two rows: bytes (c, c + 1, c', c' + 1), SXTAB16 pairs them by channel */
                uint32_t t = ec_pkhbt(dw_load16(q), dw_load16(q + s1));
                d[0] = EC_SXTAB16(off2, t);
                d[3] = EC_SXTAB16_ROR8(off2, t);
                t = ec_pkhbt(dw_load16(q + s2), dw_load16(q + s3));
                d[1] = EC_SXTAB16(off2, t);
                d[4] = EC_SXTAB16_ROR8(off2, t);
                t = ec_pkhbt(dw_load16(q + s4), dw_load16(q + s5));
                d[2] = EC_SXTAB16(off2, t);
                d[5] = EC_SXTAB16_ROR8(off2, t);
            }
        else /* padding rows: their halves masked off */
            for (int32_t k = b->ncols; k > 0; k--, q += cn, d += 6) {
                uint32_t t = ec_pkhbt(dw_load16(q), dw_load16(q + s1));
                d[0] = EC_SXTAB16(off2, t) & m0;
                d[3] = EC_SXTAB16_ROR8(off2, t) & m0;
                t = ec_pkhbt(dw_load16(q + s2), dw_load16(q + s3));
                d[1] = EC_SXTAB16(off2, t) & m1;
                d[4] = EC_SXTAB16_ROR8(off2, t) & m1;
                t = ec_pkhbt(dw_load16(q + s4), dw_load16(q + s5));
                d[2] = EC_SXTAB16(off2, t) & m2;
                d[5] = EC_SXTAB16_ROR8(off2, t) & m2;
            }
}

static EC_HOT void dw_band(const dw_band_t *b)
{
    uint32_t *const buf = b->buf;
    const int32_t n = b->n;
    dw_pairs(b);
    for (int32_t j = b->j0; j < 2; j++) {
        uint32_t *const wj = b->wc + EC_DW_WC * j;
        const uint32_t *d = buf + 3 * j, *const dend = d + 6 * n;
#if DW_ASM
        /* the addresses of this band in the channel's block (32-bit pointers), read by the assembly */
        wj[10] = (uint32_t)(uintptr_t)dend;
        wj[11] = (uint32_t)(b->o0 - b->o1); /* row oy from row oy + 1 */
        wj[12] = (uint32_t)(uintptr_t)(b->o1 + j);
        wj[13] = (uint32_t)b->rs1;
        wj[14] = (uint32_t)b->rs2;
        wj[16] = (uint32_t)(uintptr_t)d;
        {
            /* the sums of the pairs (weights P0 P1 P2 Q0 Q1 in r0..r4), then their requantization (M, k,
             * s in r0..r2, row oy + 1 in r4, the other rows from it in r3, a2, a3, cn in va, the end in vb) */
            uint32_t r0, r1, r2, r3, r4, a0, a1, a2, a3, va, vb, t, e;
            __asm__ volatile("ldrd %[r0], %[r1], [%[w]]\n\t"
                             "ldr %[r2], [%[w], #8]\n\t"
                             "ldrd %[r3], %[r4], [%[w], #12]\n\t"
                             "ldr %[d], [%[w], #64]\n\t"
                             "1:\n\t"
                             "ldrd %[va], %[vb], [%[d]]\n\t"
                             "ldr %[a1], [%[w], #24]\n\t"
                             "smlad %[a0], %[va], %[r0], %[a1]\n\t"
                             "smlad %[a2], %[vb], %[r0], %[a1]\n\t"
                             "smlatb %[a3], %[vb], %[r0], %[a1]\n\t"
                             "smlatb %[a1], %[va], %[r0], %[a1]\n\t"
                             "ldr %[va], [%[d], #8]\n\t"
                             "smlabt %[a0], %[vb], %[r3], %[a0]\n\t"
                             "smlad %[a1], %[vb], %[r3], %[a1]\n\t"
                             "smlabt %[a2], %[va], %[r3], %[a2]\n\t"
                             "smlad %[a3], %[va], %[r3], %[a3]\n\t"
                             "ldrd %[va], %[vb], [%[d], #24]\n\t"
                             "smlad %[a0], %[va], %[r1], %[a0]\n\t"
                             "smlatb %[a1], %[va], %[r1], %[a1]\n\t"
                             "smlad %[a2], %[vb], %[r1], %[a2]\n\t"
                             "smlatb %[a3], %[vb], %[r1], %[a3]\n\t"
                             "ldr %[va], [%[d], #32]\n\t"
                             "smlabt %[a0], %[vb], %[r4], %[a0]\n\t"
                             "smlad %[a1], %[vb], %[r4], %[a1]\n\t"
                             "smlabt %[a2], %[va], %[r4], %[a2]\n\t"
                             "smlad %[a3], %[va], %[r4], %[a3]\n\t"
                             "ldrd %[va], %[vb], [%[d], #48]\n\t"
                             "smlad %[a0], %[va], %[r2], %[a0]\n\t"
                             "smlatb %[a1], %[va], %[r2], %[a1]\n\t"
                             "smlad %[a2], %[vb], %[r2], %[a2]\n\t"
                             "smlatb %[a3], %[vb], %[r2], %[a3]\n\t"
                             "ldr %[va], [%[d], #56]\n\t"
                             "ldr %[t], [%[w], #20]\n\t"
                             "smlabt %[a0], %[vb], %[t], %[a0]\n\t"
                             "smlad %[a1], %[vb], %[t], %[a1]\n\t"
                             "smlabt %[a2], %[va], %[t], %[a2]\n\t"
                             "smlad %[a3], %[va], %[t], %[a3]\n\t"
                             "strd %[a0], %[a1], [%[d], %[so]]\n\t"
                             "strd %[a2], %[a3], [%[d], %[so8]]\n\t"
                             "adds %[d], %[d], #24\n\t"
                             "ldr %[t], [%[w], #40]\n\t"
                             "cmp %[d], %[t]\n\t"
                             "bne 1b\n\t"
                             "ldrd %[r0], %[r1], [%[w], #28]\n\t"
                             "ldr %[r2], [%[w], #36]\n\t"
                             "ldr %[vb], [%[w], #40]\n\t"
                             "ldrd %[r3], %[r4], [%[w], #44]\n\t"
                             "ldrd %[a2], %[a3], [%[w], #52]\n\t"
                             "ldr %[va], [%[w], #60]\n\t"
                             "ldr %[d], [%[w], #64]\n\t"
                             "2:\n\t"
                             "ldrd %[a0], %[a1], [%[d], %[so8]]\n\t"
                             "smmlar %[t], %[a1], %[r0], %[r1]\n\t"
                             "add %[t], %[t], %[a1], asr #31\n\t"
                             "asr %[t], %[t], %[r2]\n\t"
                             "ssat %[t], #8, %[t]\n\t"
                             "strb %[t], [%[r4], %[a3]]\n\t"
                             "smmlar %[t], %[a0], %[r0], %[r1]\n\t"
                             "add %[t], %[t], %[a0], asr #31\n\t"
                             "asr %[t], %[t], %[r2]\n\t"
                             "ssat %[t], #8, %[t]\n\t"
                             "strb %[t], [%[r4], %[a2]]\n\t"
                             "ldrd %[a0], %[a1], [%[d], %[so]]\n\t"
                             "smmlar %[t], %[a1], %[r0], %[r1]\n\t"
                             "add %[t], %[t], %[a1], asr #31\n\t"
                             "asr %[t], %[t], %[r2]\n\t"
                             "ssat %[t], #8, %[t]\n\t"
                             "strb %[t], [%[r4]]\n\t"
                             "smmlar %[t], %[a0], %[r0], %[r1]\n\t"
                             "add %[t], %[t], %[a0], asr #31\n\t"
                             "asr %[t], %[t], %[r2]\n\t"
                             "ssat %[t], #8, %[t]\n\t"
                             "strb %[t], [%[r4], %[r3]]\n\t"
                             "add %[r4], %[r4], %[va]\n\t"
                             "adds %[d], %[d], #24\n\t"
                             "cmp %[d], %[vb]\n\t"
                             "bne 2b"
                             : [d] "=&r"(e), [r0] "=&r"(r0), [r1] "=&r"(r1), [r2] "=&r"(r2), [r3] "=&r"(r3),
                               [r4] "=&r"(r4), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3),
                               [va] "=&r"(va), [vb] "=&r"(vb), [t] "=&r"(t)
                             : [w] "r"(wj), [so] "i"(4 * EC_DW_SUMS), [so8] "i"(4 * EC_DW_SUMS + 8)
                             : "cc", "memory");
        }
#else
        const uint32_t p0 = wj[0], p1 = wj[1], p2 = wj[2], q0 = wj[3], q1 = wj[4], q2 = wj[5];
        const int32_t acc0 = (int32_t)wj[6], m = (int32_t)wj[7], k = (int32_t)wj[8], s = (int32_t)wj[9];
        const int32_t rs1 = b->rs1, rs2 = b->rs2;
        int8_t *u0 = b->o0 + j, *u1 = b->o1 + j;
        for (const uint32_t *e = d; e != dend; e += 6) {
            uint32_t *t = (uint32_t *)e + EC_DW_SUMS;
            uint32_t va = e[0], vb = e[1];
            int32_t a0 = EC_SMLAD(va, p0, acc0);
            int32_t a1 = EC_SMLATB(va, p0, acc0);
            int32_t a2 = EC_SMLAD(vb, p0, acc0);
            int32_t a3 = EC_SMLATB(vb, p0, acc0);
            a0 = EC_SMLABT(vb, q0, a0);
            a1 = EC_SMLAD(vb, q0, a1);
            va = e[2];
            a2 = EC_SMLABT(va, q0, a2);
            a3 = EC_SMLAD(va, q0, a3);
            va = e[6];
            vb = e[7];
            a0 = EC_SMLAD(va, p1, a0);
            a1 = EC_SMLATB(va, p1, a1);
            a2 = EC_SMLAD(vb, p1, a2);
            a3 = EC_SMLATB(vb, p1, a3);
            a0 = EC_SMLABT(vb, q1, a0);
            a1 = EC_SMLAD(vb, q1, a1);
            va = e[8];
            a2 = EC_SMLABT(va, q1, a2);
            a3 = EC_SMLAD(va, q1, a3);
            va = e[12];
            vb = e[13];
            a0 = EC_SMLAD(va, p2, a0);
            a1 = EC_SMLATB(va, p2, a1);
            a2 = EC_SMLAD(vb, p2, a2);
            a3 = EC_SMLATB(vb, p2, a3);
            a0 = EC_SMLABT(vb, q2, a0);
            a1 = EC_SMLAD(vb, q2, a1);
            va = e[14];
            a2 = EC_SMLABT(va, q2, a2);
            a3 = EC_SMLAD(va, q2, a3);
            t[0] = (uint32_t)a0;
            t[1] = (uint32_t)a1;
            t[2] = (uint32_t)a2;
            t[3] = (uint32_t)a3;
        }
        for (; d != dend; d += 6, u0 += b->cn, u1 += b->cn) {
            const int32_t *t = (const int32_t *)d + EC_DW_SUMS;
            u1[rs2] = DW_REQUANT(t[3]);
            u1[rs1] = DW_REQUANT(t[2]);
            u1[0] = DW_REQUANT(t[1]);
            u0[0] = DW_REQUANT(t[0]);
        }
#endif
    }
}

/* A band with one row inside the output (dw_fast's last band of a height 4 k + 1): its pairs, then
 * that row alone (dw_row1).  Apart from dw_band (called at its depth, not from it) so that neither
 * the stack nor dw_band's code grows. */
static EC_NOINLINE void dw_band1(const dw_band_t *b)
{
    dw_pairs(b);
    for (int32_t j = b->j0; j < 2; j++) {
        const uint32_t *d = b->buf + 3 * j;
        dw_row1(b->wc + EC_DW_WC * j, d, d + 6 * b->n, b->o0 + j, b->cn);
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
    const int32_t sfull[5] = {in_row, 2 * in_row, 3 * in_row, 4 * in_row, 5 * in_row};
    /* the bands that read padding rows (the first, the last): R0 and the offsets of R1..R5 from
     * it, a padding row reading R1 (always valid), its half masked off */
    struct {
        int32_t oy;
        const int8_t *r0;
        int32_t so[5];
        uint32_t mask[3];
    } edge[2];
    for (int32_t e = 0; e < 2; e++) {
        const int32_t oy = e == 0 ? 0 : (oh - 1) / 4 * 4;
        const int8_t *const r1 = in_b + (oy - pt + 1) * in_row, *r[6];
        edge[e].oy = oy - pt < 0 || oy - pt + 6 > p->in_h ? oy : -1;
        edge[e].mask[0] = edge[e].mask[1] = edge[e].mask[2] = 0xffffffffu;
        for (int32_t k = 0; k < 6; k++) {
            const int32_t iy = oy - pt + k;
            r[k] = iy < 0 || iy >= p->in_h ? r1 : in_b + iy * in_row;
            if (r[k] == r1 && k != 1)
                edge[e].mask[k >> 1] &= (k & 1) != 0 ? 0xffffu : 0xffff0000u;
        }
        for (int32_t k = 0; k < 5; k++)
            edge[e].so[k] = (int32_t)(r[k + 1] - r[0]);
        edge[e].r0 = r[0];
    }
    /* two channels at a time, all rows (in place, a pair only overwrites what it has read) */
    for (int32_t c = 0; c < cn; c += 2) {
        /* the last pair overlaps the one before: only its new channel */
        const int32_t cg = c + 2 <= cn ? c : cn - 2;
        /* per channel c + j at EC_DW_WC j: the weight pairs P0 P1 P2 Q0 Q1 Q2, 2 bias, M, k, s, cn */
        uint32_t wc[2 * EC_DW_WC];
        {
            const int8_t *f = filter + cg;
            uint32_t h[9];
            for (int32_t i = 0; i < 9; i++, f += cn)
                h[i] = dw_load16(f);
            for (int32_t i = 0; i < 6; i++) {
                /* (w0 of c, of c + 1, w1 of c, of c + 1) -> (2 w0, 2 w1) of c, of c + 1 */
                const uint32_t t = ec_pkhbt(h[i], h[i + 3]);
                wc[i] = EC_SXTAB16(EC_SXTB16(t), t);
                wc[i + EC_DW_WC] = EC_SXTAB16_ROR8(EC_SXTB16_ROR8(t), t);
            }
            for (int32_t j = 0; j < 2; j++) {
                const int32_t sh = p->shift[cg + j];
                uint32_t *const wj = wc + EC_DW_WC * j;
                wj[6] = bias != NULL ? (uint32_t)bias[cg + j] << 1 : 0u;
                wj[7] = (uint32_t)p->multiplier[cg + j];
                /* k = zp 2^s + 2^(s-1) */
                wj[8] = (uint32_t)(2 * p->output_offset + 1) << ~sh;
                wj[9] = (uint32_t)-sh;
                wj[15] = (uint32_t)cn;
            }
        }
        for (int32_t x0 = 0; x0 < p->out_w; x0 += EC_DW_TILE) {
            /* the input columns ix .. ix + n + 1: at most one padding column each side */
            const int32_t n = p->out_w - x0 < EC_DW_TILE ? p->out_w - x0 : EC_DW_TILE;
            const int32_t ix = x0 - p->pad_left, ncol = n + 2;
            const int32_t k0 = ix < 0 ? 1 : 0, k1 = p->in_w - ix < ncol ? p->in_w - ix : ncol;
            dw_band_t b;
            b.buf = buf;
            b.wc = wc;
            b.j0 = c - cg;
            b.n = n;
            b.cn = cn;
            b.ncols = k1 - k0;
            b.col = buf + 6 * k0;
            b.off2 = ((uint32_t)p->input_offset & 0xffffu) | ((uint32_t)p->input_offset << 16);
            if (k0 > 0)
                dw_zero6(buf);
            if (k1 < ncol)
                dw_zero6(buf + 6 * k1);
            for (int32_t oy = 0; oy < oh; oy += 4) {
                const int e = oy == edge[0].oy ? 0 : oy == edge[1].oy ? 1 : -1;
                const int8_t *r0;
                if (e < 0) {
                    r0 = in_b + (oy - pt) * in_row;
                    b.so = sfull;
                    b.mask[0] = b.mask[1] = b.mask[2] = 0xffffffffu;
                } else {
                    r0 = edge[e].r0;
                    b.so = edge[e].so;
                    b.mask[0] = edge[e].mask[0];
                    b.mask[1] = edge[e].mask[1];
                    b.mask[2] = edge[e].mask[2];
                }
                b.q = r0 + cg + (ix + k0) * cn;
                /* rows past the end alias the row before */
                const int32_t nr = oh - oy < 4 ? oh - oy : 4;
                b.o0 = out_b + oy * rl + x0 * cn + cg;
                b.o1 = nr < 2 ? b.o0 : b.o0 + rl;
                b.rs1 = nr < 3 ? 0 : rl;
                b.rs2 = nr < 3 ? 0 : nr < 4 ? rl : 2 * rl;
                if (nr == 1)
                    dw_band1(&b);
                else
                    dw_band(&b);
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
