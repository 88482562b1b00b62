/*
 * ec_depthwise_conv2d_dsp_strips.c - the int8 depthwise 3x3 stride-1 fast path in strips, for layers
 * with its row pairs' workspace in the arena (--optimize speed: kernel_plan.dw_workspaces).
 *
 * Joined after ec_depthwise_conv2d_dsp.c into ec_kernels_dsp.c (catalogue.GROUP_SOURCE): it uses
 * that file's DW_ASM, DW_REQUANT, dw_load16, dw_fast_ok and its band kernel (dw_fast_batches)
 * where the workspace is missing.
 */

/* 3x3, stride 1, dilation 1, padding <= 1, no fused residual, every channel's requantization a
 * right shift (dw_fast_ok).  Per tile of EC_DW_TILE output columns, pair of channels (c, c + 1)
 * and strip of at most 28 output rows from oy0, dw_strip_pairs first turns the strip's input into
 * int16 pairs (input + input_offset; 0 in the padding) of two rows: pair i = (R[2 i], R[2 i + 1]),
 * R[r] the input row oy0 - pad_top + r, for each input column of the tile and each of the two
 * channels (pair i of the tile's columns at i * EC_DW_COLS words), each built once (the band
 * kernel builds the pairs a band shares with the next twice).  Output rows oy0 + 4 b .. + 3 read
 * the pairs A = 2 b, B = 2 b + 1, C = 2 b + 2; with the weight pairs P = (2 w0, 2 w1),
 * Q = (2 w1, 2 w2) of each kernel column (w0..w2 its rows):
 *   row 4 b:     SMLAD(A, P) + B.lo * Q.hi      row 4 b + 1:  A.hi * P.lo + SMLAD(B, Q)
 *   row 4 b + 2: SMLAD(B, P) + C.lo * Q.hi      row 4 b + 3:  B.hi * P.lo + SMLAD(C, Q)
 * so 6 multiply instructions an output for the 9 taps, accumulating 2 * acc (exactly), then
 * DW_REQUANT.  dws_chan does one channel of a strip in one call: blocks of 4 rows x 1 column along
 * a block row, then the next block row, the sums requantized in registers (no round trip through
 * memory), the weights and constants read from its own frame.  A last block row of 1 or 2 rows
 * computes 2; one of 3 computes 4 and stores the row past the end onto the last row first.
 * In place (output row r exactly on input row r - pad_top, one tile of columns): a pair of
 * channels has read all its input rows of a strip (into the pairs) before it writes, it writes
 * only its own channels, on input rows before the next strip's first input row. */
#define EC_DWS_NP 15                                /* pairs a column at most: strips of 28 rows */
#define EC_DWS_PS (4 * EC_DW_COLS)                 /* bytes from a pair of the columns to the next: 28 */
#define EC_DWS_SCRATCH (2 * EC_DW_COLS * EC_DWS_NP) /* words (840 bytes): the workspace */

/* One channel of a strip (dw_chan); the assembly reads it at the byte offsets in the comments */
typedef struct {
    uint32_t w[6];      /*  0: the weight pairs P0 P1 P2 Q0 Q1 Q2 of the kernel columns */
    int32_t bias2;      /* 24: 2 bias */
    int32_t m, k, s;    /* 28: the requantization (DW_REQUANT) */
    int32_t off[3];     /* 40: rows 1, 2, 3 of a block from row 0 */
    int32_t toff[3];    /* 52: the same in the last block row (rows past the end: the last row) */
    int32_t cn;         /* 64: from an output column to the next */
    const uint32_t *d;  /* 68: pair 0 of the first column */
    int8_t *o;          /* 72: output row oy0, the tile's first column, the channel */
    int32_t n, nb;      /* 76: output columns, block rows */
    int32_t ostep;      /* 84: from the end of a block row to the start of the next (4 rl - n cn) */
    int32_t tail2;      /* 88: the last block row has 1 or 2 rows (it computes 2, else 4) */
} dws_chan_t;

#if DW_ASM
_Static_assert(sizeof(dws_chan_t) == 92 && EC_DWS_PS == 28, "dws_chan's assembly reads these offsets");

/* r0: the pairs (pair 2 b, column x; pair 2 b + 1 28 bytes on); r1-r4: the sums of rows 0-3; r5, r6, r7: M, k, s; r8: the
 * output (row 4 b, column x); r9, r10: a kernel column's weight pairs P, Q (then the row offsets);
 * r11, r12, lr: the pairs A, B, C of a column.  The channel's dws_chan_t is copied to the frame
 * (sp + 0..91; the tail offsets over the others in the last block row), sp + 92: the end of the
 * block row. */
static __attribute__((naked, noinline)) void dws_chan(const dws_chan_t *blk EC_UNUSED)
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
        "add r1, r0, r2, lsl #2\n\t"
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
        "ldr r12, [r0, #28]\n\t"
        "ldr lr, [r0, #56]\n\t"
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
        "ldr r11, [r0, #4]\n\t"
        "ldr r12, [r0, #32]\n\t"
        "ldr lr, [r0, #60]\n\t"
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
        "ldr r11, [r0, #8]\n\t"
        "ldr r12, [r0, #36]\n\t"
        "ldr lr, [r0, #64]\n\t"
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
        "adds r0, r0, #4\n\t"
        "add r8, r8, r11\n\t"
        "cmp r0, r12\n\t"
        "bne 1b\n\t"
        "ldr r1, [sp, #80]\n\t" /* the next block row */
        "subs r1, r1, #1\n\t"
        "str r1, [sp, #80]\n\t"
        "beq 6f\n\t"
        "ldr r2, [sp, #76]\n\t"
        "sub r0, r0, r2, lsl #2\n\t"
        "adds r0, r0, #56\n\t"
        "ldr r3, [sp, #84]\n\t"
        "add r8, r8, r3\n\t"
        "b 4b\n\t"
        "2:\n\t" /* a last block row of 1 or 2 rows: rows 0 and 1 (A, B), row 1 stored first */
        "ldr r9, [sp]\n\t"
        "ldr r10, [sp, #12]\n\t"
        "ldr r11, [r0]\n\t"
        "ldr r12, [r0, #28]\n\t"
        "ldr r2, [sp, #24]\n\t"
        "smlad r1, r11, r9, r2\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "ldr r9, [sp, #4]\n\t"
        "ldr r10, [sp, #16]\n\t"
        "ldr r11, [r0, #4]\n\t"
        "ldr r12, [r0, #32]\n\t"
        "smlad r1, r11, r9, r1\n\t"
        "smlatb r2, r11, r9, r2\n\t"
        "smlabt r1, r12, r10, r1\n\t"
        "smlad r2, r12, r10, r2\n\t"
        "ldr r9, [sp, #8]\n\t"
        "ldr r10, [sp, #20]\n\t"
        "ldr r11, [r0, #8]\n\t"
        "ldr r12, [r0, #36]\n\t"
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
        "adds r0, r0, #4\n\t"
        "add r8, r8, r11\n\t"
        "cmp r0, r12\n\t"
        "bne 2b\n\t"
        "6:\n\t"
        "add sp, sp, #96\n\t"
        "pop {r4-r11, pc}\n\t");
}
#else
/* What the assembly does */
static void dws_chan(const dws_chan_t *blk)
{
    const uint32_t p0 = blk->w[0], p1 = blk->w[1], p2 = blk->w[2], q0 = blk->w[3], q1 = blk->w[4], q2 = blk->w[5];
    const int32_t m = blk->m, k = blk->k, s = blk->s, cn = blk->cn;
    const uint32_t *e = blk->d;
    int8_t *o = blk->o;
    for (int32_t b = blk->nb; b > 0; b--, e += 2 * EC_DW_COLS - blk->n, o += blk->ostep) {
        const int32_t *off = b == 1 ? blk->toff : blk->off;
        for (int32_t x = 0; x < blk->n; x++, e++, o += cn) {
            /* pairs A, B, C of columns x, x + 1, x + 2 */
            const uint32_t e0[3] = {e[0], e[EC_DW_COLS], e[2 * EC_DW_COLS]};
            const uint32_t f[3] = {e[1], e[1 + EC_DW_COLS], e[1 + 2 * EC_DW_COLS]};
            const uint32_t g[3] = {e[2], e[2 + EC_DW_COLS], e[2 + 2 * EC_DW_COLS]};
            if (b == 1 && blk->tail2) {
                int32_t r0 = EC_SMLAD(e0[0], p0, blk->bias2), r1 = EC_SMLATB(e0[0], p0, blk->bias2);
                r0 = EC_SMLABT(e0[1], q0, r0);
                r1 = EC_SMLAD(e0[1], q0, r1);
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
            int32_t a0 = EC_SMLAD(e0[0], p0, blk->bias2), a1 = EC_SMLATB(e0[0], p0, blk->bias2);
            int32_t a2 = EC_SMLAD(e0[1], p0, blk->bias2), a3 = EC_SMLATB(e0[1], p0, blk->bias2);
            a0 = EC_SMLABT(e0[1], q0, a0);
            a1 = EC_SMLAD(e0[1], q0, a1);
            a2 = EC_SMLABT(e0[2], q0, a2);
            a3 = EC_SMLAD(e0[2], q0, a3);
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

/* The int16 pairs of a strip (see above) of channels c, c + 1 into buf (channel c + 1 `ch` words
 * on): buffer columns k0..k1 - 1 from input column q (channel c, row 0) on, pairs 0..np - 1 of
 * input rows r0 + 2 i, r0 + 2 i + 1 (0 outside rows 0..in_h - 1, where the input offset is not
 * added either: r0 >= -1, so only pair 0 can start above the input). */
static EC_HOT void dw_strip_pairs(uint32_t *buf, int32_t ch, const int8_t *q, int32_t k0, int32_t k1, int32_t cn,
                            int32_t in_row, int32_t in_h, int32_t r0, int32_t np, uint32_t off2)
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
    uint32_t *d = buf + ilo * EC_DW_COLS + k0;
#if DW_ASM
    if (n2 > 0 && k1 > k0) {
        /* n2, from the end of a column to the next (input, pairs), columns */
        int32_t st[4] = {n2, cn - 4 * n2 * in_row, 4 - 2 * EC_DWS_PS * n2, k1 - k0};
        const int8_t *x2 = x + 2 * in_row;
        uint32_t *d1 = d + ch;
        uint32_t a, b, c, e;
        int32_t cnt;
        _Static_assert(EC_DWS_PS == 28, "dw_strip_pairs' assembly: pair i + 1 28 bytes on");
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
                         "str %[e], [%[d], #28]\n\t"
                         "str %[b], [%[d]], #56\n\t"
                         "str %[c], [%[d1], #28]\n\t"
                         "str %[a], [%[d1]], #56\n\t"
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
                         "add %[d1], %[d1], %[b]\n\t"
                         "subs %[c], %[c], #1\n\t"
                         "str %[c], [%[st], #12]\n\t"
                         "bne 2b"
                         : [x] "+r"(x), [x2] "+r"(x2), [d] "+r"(d), [d1] "+r"(d1), [n] "=&r"(cnt), [a] "=&r"(a),
                           [b] "=&r"(b), [c] "=&r"(c), [e] "=&r"(e)
                         : [r1] "r"(in_row), [r4] "r"(4 * in_row), [off] "r"(off2), [st] "r"(st)
                         : "cc", "memory");
    }
#else
    for (int32_t k = k0; k < k1; k++, x += cn, d++) {
        for (int32_t i = 0; i < n2; i++) {
            const int8_t *const y = x + 4 * i * in_row;
            uint32_t *const dd = d + 2 * i * EC_DW_COLS;
            const uint32_t t = ec_pkhbt(dw_load16(y), dw_load16(y + in_row));
            const uint32_t u = ec_pkhbt(dw_load16(y + 2 * in_row), dw_load16(y + 3 * in_row));
            dd[0] = EC_SXTAB16(off2, t);
            dd[ch] = EC_SXTAB16_ROR8(off2, t);
            dd[EC_DW_COLS] = EC_SXTAB16(off2, u);
            dd[ch + EC_DW_COLS] = EC_SXTAB16_ROR8(off2, u);
        }
    }
#endif
    for (int32_t k = k0; k < k1; k++) {
        const int8_t *const col = q + k * cn;
        uint32_t *const d0 = buf + k, *const d1 = d0 + ch;
        if (ilo > 0) { /* rows -1, 0 */
            const uint32_t t = dw_load16(col) << 16;
            d0[0] = EC_SXTAB16(off2, t) & 0xffff0000u;
            d1[0] = EC_SXTAB16_ROR8(off2, t) & 0xffff0000u;
        }
        if ((ihi - ilo) & 1) { /* the last pair with both rows inside */
            const int8_t *const y = col + (r0 + 2 * ihi - 2) * in_row;
            const uint32_t t = ec_pkhbt(dw_load16(y), dw_load16(y + in_row));
            d0[(ihi - 1) * EC_DW_COLS] = EC_SXTAB16(off2, t);
            d1[(ihi - 1) * EC_DW_COLS] = EC_SXTAB16_ROR8(off2, t);
        }
        if (half) { /* rows in_h - 1, in_h */
            const uint32_t t = dw_load16(col + (in_h - 1) * in_row);
            d0[ihi * EC_DW_COLS] = EC_SXTAB16(off2, t) & 0xffffu;
            d1[ihi * EC_DW_COLS] = EC_SXTAB16_ROR8(off2, t) & 0xffffu;
        }
        for (int32_t i = zero0; i < np; i++)
            d0[i * EC_DW_COLS] = d1[i * EC_DW_COLS] = 0;
    }
}

/* The fast path (one batch, dw_fast_ok), see above; buf: 2 * EC_DW_COLS * cap words, 3 <= cap <= EC_DWS_NP
 * pairs a column. */
static EC_HOT void dw_strips(const ec_conv_params_t *p, const int8_t *in_b, const int8_t *filter, const int32_t *bias,
                           int8_t *out_b, uint32_t *buf, int32_t cap)
{
    const int32_t cn = p->in_c, pt = p->pad_top, oh = p->out_h;
    const int32_t rl = p->out_w * cn, in_row = p->in_w * cn;
    const uint32_t off2 = ((uint32_t)p->input_offset & 0xffffu) | ((uint32_t)p->input_offset << 16);
    const int32_t chw = cap * EC_DW_COLS, strip = (cap - 1) / 2 * 4; /* channel c + 1's pairs; rows a strip */
    dws_chan_t ch[2];
    for (int32_t x0 = 0; x0 < p->out_w; x0 += EC_DW_TILE) {
        /* the input columns ix .. ix + n + 1: at most one padding column each side (its pairs 0) */
        const int32_t n = p->out_w - x0 < EC_DW_TILE ? p->out_w - x0 : EC_DW_TILE;
        const int32_t ix = x0 - p->pad_left, ncol = n + 2;
        const int32_t k0 = ix < 0 ? 1 : 0, k1 = p->in_w - ix < ncol ? p->in_w - ix : ncol;
        for (int32_t k = 0; k < ncol; k++)
            if (k < k0 || k >= k1)
                for (int32_t i = 0; i < cap; i++)
                    buf[i * EC_DW_COLS + k] = buf[chw + i * EC_DW_COLS + k] = 0;
        for (int32_t j = 0; j < 2; j++) {
            dws_chan_t *const b = &ch[j];
            for (int32_t r = 0; r < 3; r++)
                b->off[r] = (r + 1) * rl;
            b->cn = cn;
            b->n = n;
            b->ostep = 4 * rl - n * cn;
            b->d = buf + j * chw;
        }
        const int8_t *const q = in_b + ix * cn;
        int32_t rows_set = -1;
        /* two channels at a time (the last pair of an odd count overlaps the one before: only its
         * new channel), their strips */
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
            for (int32_t j = c - cg; j < 2; j++) {
                const int32_t sh = p->shift[cg + j];
                dws_chan_t *const b = &ch[j];
                b->bias2 = bias != NULL ? (int32_t)((uint32_t)bias[cg + j] << 1) : 0;
                b->m = p->multiplier[cg + j];
                b->k = (int32_t)((uint32_t)(2 * p->output_offset + 1) << ~sh); /* zp 2^s + 2^(s-1) */
                b->s = -sh;
            }
            for (int32_t oy0 = 0; oy0 < oh; oy0 += strip) {
                const int32_t rows = oh - oy0 < strip ? oh - oy0 : strip;
                const int32_t nb = (rows + 3) / 4, last = rows - 4 * (nb - 1) - 1; /* the last row of the last block */
                dw_strip_pairs(buf, chw, q + cg, k0, k1, cn, in_row, p->in_h, oy0 - pt, 2 * nb + 1, off2);
                if (rows != rows_set) /* the strip's block rows, the same for every channel */
                    for (int32_t j = 0; j < 2; j++) {
                        dws_chan_t *const b = &ch[j];
                        for (int32_t r = 0; r < 3; r++)
                            b->toff[r] = (r + 1 < last ? r + 1 : last) * rl;
                        b->tail2 = last <= 1;
                        b->nb = nb;
                    }
                rows_set = rows;
                for (int32_t j = c - cg; j < 2; j++) {
                    ch[j].o = out_b + oy0 * rl + x0 * cn + cg + j;
                    dws_chan(&ch[j]);
                }
            }
        }
    }
    if (p->act_min > -128 || p->act_max < 127)
        for (int8_t *o = out_b, *end = out_b + oh * rl; o < end; o++)
            *o = (int8_t)ec_clip_i32(*o, p->act_min, p->act_max);
}

/* The fast path in strips (the generator checked dw_fast_ok and planned the workspace: 4 *
 * EC_DWS_SCRATCH bytes, word-aligned); without it, the band kernel.  Host debug builds check the
 * generator's decision. */
void ec_depthwise_conv2d_s8_dsp3x3w(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                    const int32_t *bias, int8_t *output, int8_t *work)
{
#if defined(EC_DEBUG)
    if (!dw_fast_ok(p, input, bias, output, NULL))
        __builtin_trap();
#endif
    if (work == NULL || ((uintptr_t)work & 3u) != 0) {
        dw_fast_batches(p, input, filter, bias, output, NULL);
        return;
    }
    for (int32_t b = 0; b < p->batches; b++)
        dw_strips(p, input + b * p->in_h * p->in_w * p->in_c, filter, bias, output + b * p->out_h * p->out_w * p->in_c,
                  (uint32_t *)(void *)work, EC_DWS_NP);
}
