/*
 * ec_conv2d_gemm16.c - the 2x4 block product of ec_conv2d_s8_gemm on int16 weights in flash
 * (--optimize speed; see ec_kernels_gemm.h).  Joined after ec_conv2d_gemm.c into ec_kernels_gemm.c
 * (one translation unit, catalogue.GROUP_SOURCE); reached through the layer's params (`gemm16`).
 */
#include "ec_kernels_gemm.h"
#include "ec_simd.h"
#include <string.h>

/* ---- the 2x4 block product on widened weights (--optimize speed) ------------------------- */

/*
 * ec_gemm16_2x4: as ec_gemm16_2x2 with the weights of every two channel pairs (four channels, a
 * "quad") laid out for 2 pixels x 4 channels blocks (packing.py, quad_gemm_weights): per quad and
 * 4 taps eight words, taps (0, 2) of its four channels, then their taps (1, 3).  An odd pair
 * count leaves the last pair in ec_gemm16_2x2's layout after the quads.  The accumulators and the
 * bias are as ec_gemm16_2x2's (per channel pair 4 words), so every store serves both.
 *
 * Why (docs/cycles.md, "Hot loops"): per two taps, one chain of four LDRs with immediate offsets
 * (both pixels, channels 0 and 1: on the Cortex-M4 2 + 1 + 1 + 1 cycles, TRM 3.3.2) feeds four
 * SMLADs, a chain of two (channels 2 and 3: 2 + 1) four more: 16 cycles per 16 MACs, where the
 * 2x2 block's two LDMs and eight SMLADs take 18.
 */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
void ec_gemm16_4x(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t quads, int32_t k4,
                  const int32_t *bias);
void ec_gemm16_4x_1(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t quads, int32_t k4,
                    const int32_t *bias);
void ec_gemm16_4x_rq(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t quads, int32_t k4,
                     const int32_t *rq, int8_t *d1);
void ec_gemm16_4x_rq_1(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t quads, int32_t k4,
                       const int32_t *rq, int8_t *d1);
/* r0-r3 channels 0, 1 of pixel 0, then of pixel 1, r4-r7 channels 2, 3 the same (the order of the
 * accumulators in `acc`), r8/r9 a word of each pixel, r10/r11 a word of two channels, r12 col, lr
 * weights (no write-back: both are advanced once a pass of 16 chunks).  One chunk: 28 instructions
 * of 4 bytes.  The first pass enters part way (both pointers moved back by the chunks it skips).
 * Stack: col moved back, acc, quads left, entry address, passes, passes left, bias, 32 bytes x
 * chunks skipped; then the saved registers, then the arguments k4 and bias. */
#define GM4_HALF(CO, WO) \
    "    ldr.w r8, [r12, #(gm4c * 16 + " #CO ")]\n" \
    "    ldr.w r9, [r12, #(gm4c * 16 + 8 + " #CO ")]\n" \
    "    ldr.w r10, [lr, #(gm4c * 32 + " #WO ")]\n" \
    "    ldr.w r11, [lr, #(gm4c * 32 + 4 + " #WO ")]\n" \
    "    smlad r0, r8, r10, r0\n" \
    "    smlad r1, r8, r11, r1\n" \
    "    smlad r2, r9, r10, r2\n" \
    "    smlad r3, r9, r11, r3\n" \
    "    ldr.w r10, [lr, #(gm4c * 32 + 8 + " #WO ")]\n" \
    "    ldr.w r11, [lr, #(gm4c * 32 + 12 + " #WO ")]\n" \
    "    smlad r4, r8, r10, r4\n" \
    "    smlad r5, r8, r11, r5\n" \
    "    smlad r6, r9, r10, r6\n" \
    "    smlad r7, r9, r11, r7\n"
/* A pass of 16 chunks (label 3: its first, 5: its end), each 112 bytes of code so that a pass
 * can be entered part way (the entry computed from the chunks skipped): both 2x4 loops */
#define GM4_CHUNKS(NAME) \
    "    .p2align 2\n" \
    "3:\n" \
    "    .set gm4c, 0\n" \
    "    .rept 16\n" \
    GM4_HALF(0, 0) \
    GM4_HALF(4, 16) \
    "    .set gm4c, gm4c + 1\n" \
    "    .endr\n" \
    "5:\n" \
    "    .if (5b - 3b) - 16 * 112\n" \
    "    .error \"" NAME ": a chunk is not 112 bytes\"\n" \
    "    .endif\n"

/* The quad loop of ec_gemm16_4x (PASS_START/PASS_END: the pass count, empty when one pass does). */
#define GM4_BODY(NAME, PASS_START, PASS_END) \
    EC_ASM_FUNC(NAME) \
    "    push {r4-r11, lr}\n" \
    "    sub sp, sp, #32\n" \
    "    ldr r4, [sp, #68]\n" /* k4: chunks */ \
    "    add r5, r4, #15\n" \
    "    lsr r5, r5, #4\n" \
    "    str r5, [sp, #16]\n" /* passes */ \
    "    rsb r4, r4, #0\n" \
    "    and r4, r4, #15\n" /* chunks skipped on the first pass */ \
    "    sub r1, r1, r4, lsl #4\n" \
    "    str r1, [sp, #0]\n" \
    "    str r2, [sp, #4]\n" \
    "    str r3, [sp, #8]\n" \
    "    lsl r5, r4, #5\n" \
    "    str r5, [sp, #28]\n" \
    "    mov lr, r0\n" \
    "    mov r5, #112\n" \
    "    mul r4, r4, r5\n" \
    "    adr r5, 3f\n" \
    "    add r4, r4, r5\n" \
    "    orr r4, r4, #1\n" \
    "    str r4, [sp, #12]\n" /* entry (Thumb) */ \
    "    ldr r4, [sp, #72]\n" \
    "    str r4, [sp, #24]\n" \
    "1:\n" \
    "    ldr r8, [sp, #24]\n" /* the accumulators start from the bias */ \
    "    ldmia r8!, {r0, r1, r4, r5}\n" \
    "    str r8, [sp, #24]\n" \
    "    mov r2, r0\n" \
    "    mov r3, r1\n" \
    "    mov r6, r4\n" \
    "    mov r7, r5\n" \
    "    ldr r8, [sp, #28]\n" \
    "    sub lr, lr, r8\n" \
    "    ldr r12, [sp, #0]\n" \
    PASS_START \
    "    ldr r8, [sp, #12]\n" \
    "    bx r8\n" \
    GM4_CHUNKS(NAME) \
    "    add r12, r12, #256\n" \
    "    add lr, lr, #512\n" \
    PASS_END /* (then lr: the next quad's weights) */ \
    "    ldr r8, [sp, #4]\n" \
    "    stmia r8!, {r0-r7}\n" \
    "    str r8, [sp, #4]\n" \
    "    ldr r8, [sp, #8]\n" \
    "    subs r8, r8, #1\n" \
    "    str r8, [sp, #8]\n" \
    "    bne 1b\n" \
    "    add sp, sp, #32\n" \
    "    pop {r4-r11, pc}\n" \
    EC_ASM_END(NAME)
__asm__(GM4_BODY("ec_gemm16_4x",
                 "    ldr r8, [sp, #16]\n"
                 "    str r8, [sp, #20]\n",
                 "    ldr r8, [sp, #20]\n"
                 "    subs r8, r8, #1\n"
                 "    str r8, [sp, #20]\n"
                 "    bne 3b\n"));
/* k4 <= 16 (at most 64 taps: one pass), without the pass count: 8 cycles fewer a quad */
__asm__(GM4_BODY("ec_gemm16_4x_1", "", ""));

/*
 * ec_gemm16_4x_rq: ec_gemm16_4x with the requantizing store fused: at a quad's end its eight
 * accumulators go from the registers to int8 outputs (the quad's four channels of d0 and of d1),
 * instead of an STM here and a second pass over them (ec_gemm_store2k: LDR, LSL #1 and the
 * call).  The weights and the bias were doubled at compile time (2w fits int16, 2a fits int32
 * where gemm_acc_ok holds), so each accumulator is already the 2a that SMMLAR takes: per output
 * SMMLAR, ADD (- [a < 0]), ASR, SSAT, STRB (the arithmetic of ec_gemm_store2k).  The table rq
 * (packing.py, fused_store_table) holds per quad the four doubled biases, then per channel M, s,
 * k, and after the last quad four words read ahead: at a quad's end one LDM per channel of its
 * constants, then one of the next quad's bias.  A first pass that enters at the first chunk
 * falls through into it (no computed branch).
 * Stack: col moved back, d0, the end of rq, entry address, passes, passes left, 32 bytes x chunks
 * skipped, rq, d1; then the saved registers, then the arguments k4, rq, d1.
 */
#define GM4R_OUT(ACC, DST) \
    "    smmlar r12, " ACC ", r9, r11\n" \
    "    add r12, r12, " ACC ", asr #31\n" \
    "    asr r12, r12, r10\n" \
    "    ssat r12, #8, r12\n" \
    "    strb r12, [" DST "], #1\n"
#define GM4R_BODY(NAME, PASS_START, PASS_END, NEXT) \
    EC_ASM_FUNC(NAME) \
    "    push {r4-r11, lr}\n" \
    "    sub sp, sp, #36\n" \
    "    ldr r4, [sp, #72]\n" /* k4: chunks */ \
    "    add r5, r4, #15\n" \
    "    lsr r5, r5, #4\n" \
    "    str r5, [sp, #16]\n" /* passes */ \
    "    rsb r4, r4, #0\n" \
    "    and r4, r4, #15\n" /* chunks skipped on the first pass */ \
    "    sub r1, r1, r4, lsl #4\n" \
    "    str r1, [sp, #0]\n" \
    "    str r2, [sp, #4]\n" /* d0 */ \
    "    lsl r5, r4, #5\n" \
    "    str r5, [sp, #24]\n" \
    "    mov lr, r0\n" /* weights */ \
    "    mov r5, #112\n" \
    "    mul r4, r4, r5\n" \
    "    adr r5, 3f\n" \
    "    add r4, r4, r5\n" \
    "    orr r4, r4, #1\n" \
    "    str r4, [sp, #12]\n" /* entry (Thumb) */ \
    "    ldr r4, [sp, #80]\n" \
    "    str r4, [sp, #32]\n" /* d1 */ \
    "    ldr r8, [sp, #76]\n" /* rq */ \
    "    add r3, r8, r3, lsl #6\n" \
    "    add r3, r3, #16\n" \
    "    str r3, [sp, #8]\n" /* its end: after the bias read ahead past the last quad */ \
    "    ldmia r8!, {r0, r1, r4, r5}\n" /* the first quad's bias */ \
    "    str r8, [sp, #28]\n" \
    "1:\n" /* r0, r1, r4, r5: the quad's bias; lr its weights */ \
    "    ldr r3, [sp, #24]\n" \
    "    ldr r12, [sp, #0]\n" \
    "    mov r2, r0\n" \
    "    mov r6, r4\n" \
    "    mov r7, r5\n" \
    "    sub lr, lr, r3\n" \
    PASS_START \
    "    cmp r3, #0\n" \
    "    bne.w 6f\n" \
    "    mov r3, r1\n" \
    GM4_CHUNKS(NAME) \
    PASS_END \
    "    ldr r8, [sp, #28]\n" \
    NEXT /* (then lr: the next quad's weights) */ \
    "    ldmia r8!, {r9, r10, r11}\n" /* channel 0: r0, r2 */ \
    "    smmlar r12, r0, r9, r11\n" \
    "    add r12, r12, r0, asr #31\n" \
    "    ldr r0, [sp, #4]\n" /* d0 (two instructions before its first use: no address stall) */ \
    "    asr r12, r12, r10\n" \
    "    ssat r12, #8, r12\n" \
    "    strb r12, [r0], #1\n" \
    "    smmlar r12, r2, r9, r11\n" \
    "    add r12, r12, r2, asr #31\n" \
    "    ldr r2, [sp, #32]\n" /* d1 */ \
    "    asr r12, r12, r10\n" \
    "    ssat r12, #8, r12\n" \
    "    strb r12, [r2], #1\n" \
    "    ldmia r8!, {r9, r10, r11}\n" /* channel 1: r1, r3 */ \
    GM4R_OUT("r1", "r0") \
    GM4R_OUT("r3", "r2") \
    "    ldmia r8!, {r9, r10, r11}\n" /* channel 2: r4, r6 */ \
    GM4R_OUT("r4", "r0") \
    GM4R_OUT("r6", "r2") \
    "    ldmia r8!, {r9, r10, r11}\n" /* channel 3: r5, r7 */ \
    GM4R_OUT("r5", "r0") \
    GM4R_OUT("r7", "r2") \
    "    ldr r9, [sp, #8]\n" \
    "    str r0, [sp, #4]\n" \
    "    str r2, [sp, #32]\n" \
    "    ldmia r8!, {r0, r1, r4, r5}\n" /* the next quad's bias */ \
    "    str r8, [sp, #28]\n" \
    "    cmp r8, r9\n" \
    "    bne 1b\n" \
    "    add sp, sp, #36\n" \
    "    pop {r4-r11, pc}\n" \
    "6:\n" /* the first pass enters part way */ \
    "    mov r3, r1\n" \
    "    ldr r8, [sp, #12]\n" \
    "    bx r8\n" \
    EC_ASM_END(NAME)
__asm__(GM4R_BODY("ec_gemm16_4x_rq",
                  "    ldr r8, [sp, #16]\n"
                  "    str r8, [sp, #20]\n",
                  "    add r12, r12, #256\n"
                  "    add lr, lr, #512\n"
                  "    ldr r8, [sp, #20]\n"
                  "    subs r8, r8, #1\n"
                  "    str r8, [sp, #20]\n"
                  "    bne 3b\n", ""));
__asm__(GM4R_BODY("ec_gemm16_4x_rq_1", "", "", "    add lr, lr, #512\n"));
#else
/* The same arithmetic in plain C (host builds). */
static void ec_gemm16_4x(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t quads, int32_t k4,
                         const int32_t *bias)
{
    for (int32_t q = 0; q < quads; q++, bias += 4, acc += 8) {
        uint32_t a[2][4];
        for (int c = 0; c < 4; c++)
            a[0][c] = a[1][c] = (uint32_t)bias[c];
        const uint32_t *x = col;
        for (int32_t k = 0; k < k4; k++, x += 4, w16 += 8) {
            for (int px = 0; px < 2; px++)
                for (int c = 0; c < 4; c++)
                    for (int h = 0; h < 2; h++) { /* h: taps (0, 2), then (1, 3) */
                        const uint32_t xv = x[2 * px + h], wv = w16[4 * h + c];
                        a[px][c] += (uint32_t)((int32_t)(int16_t)(xv & 0xffffu) * (int16_t)(wv & 0xffffu) +
                                               (int32_t)(int16_t)(xv >> 16) * (int16_t)(wv >> 16));
                    }
        }
        /* channel c, pixel px: acc[4 (c >> 1) + (c & 1) + 2 px] */
        for (int c = 0; c < 4; c++)
            for (int px = 0; px < 2; px++)
                acc[4 * (c >> 1) + (c & 1) + 2 * px] = (int32_t)a[px][c];
    }
}

static void ec_gemm16_4x_1(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t quads, int32_t k4,
                           const int32_t *bias)
{
    ec_gemm16_4x(w16, col, acc, quads, k4, bias);
}

/* ec_gemm16_4x_rq's arithmetic: each quad's (doubled) accumulators from its bias in rq, then
 * ec_gemm_store2k's formula on them without its doubling */
static void ec_gemm16_4x_rq(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t quads, int32_t k4,
                            const int32_t *rq, int8_t *d1)
{
    for (int32_t q = 0; q < quads; q++, w16 += 8 * k4, d0 += 4, d1 += 4) {
        int32_t acc[8];
        ec_gemm16_4x(w16, col, acc, 1, k4, rq);
        rq += 4;
        for (int c = 0; c < 4; c++, rq += 3)
            for (int px = 0; px < 2; px++) {
                const int32_t a2 = acc[4 * (c >> 1) + (c & 1) + 2 * px];
                const int64_t prod = (int64_t)a2 * rq[0] + ((int64_t)1 << 31);
                int32_t h = (int32_t)((uint32_t)rq[2] + (uint32_t)(int32_t)(prod >> 32)) + (a2 < 0 ? -1 : 0);
                h >>= rq[1];
                (px == 0 ? d0 : d1)[c] = (int8_t)(h < -128 ? -128 : h > 127 ? 127 : h);
            }
    }
}

static void ec_gemm16_4x_rq_1(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t quads, int32_t k4,
                              const int32_t *rq, int8_t *d1)
{
    ec_gemm16_4x_rq(w16, col, d0, quads, k4, rq, d1);
}
#endif

/* The entry points, one pass (k4 <= 16: ..._1) or any number, each linking only its own loop (the
 * generator names one of each kind per model: gemm.gemm16_names) */
void ec_gemm16_2x4(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                   const int32_t *bias)
{
    const int32_t quads = pairs >> 1;
    if (quads > 0)
        ec_gemm16_4x(w16, col, acc, quads, k4, bias);
    if (pairs & 1) /* (the last pair in ec_gemm16_2x2's layout, 8 words per 4 taps of a quad before it) */
        ec_gemm16_2x2(w16 + 8 * k4 * quads, col, acc + 8 * quads, 1, k4, bias + 4 * quads);
}

void ec_gemm16_2x4_1(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                     const int32_t *bias)
{
    const int32_t quads = pairs >> 1;
    if (quads > 0)
        ec_gemm16_4x_1(w16, col, acc, quads, k4, bias);
    if (pairs & 1)
        ec_gemm16_2x2_1(w16 + 8 * k4 * quads, col, acc + 8 * quads, 1, k4, bias + 4 * quads);
}

void ec_gemm16_2x4_rq(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t pairs, int32_t k4,
                      const int32_t *rq, int8_t *d1)
{
    ec_gemm16_4x_rq(w16, col, d0, pairs >> 1, k4, rq, d1);
}

void ec_gemm16_2x4_rq1(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t pairs, int32_t k4,
                       const int32_t *rq, int8_t *d1)
{
    ec_gemm16_4x_rq_1(w16, col, d0, pairs >> 1, k4, rq, d1);
}

/* ---- the layer loop of the fused store -------------------------------------------------------- */

/* ec_conv2d_s8_gemm for a layer whose block products store their own outputs (g->gemm16rq: one
 * block, every channel computed, no residual add, the weights in flash, an even number of pairs in
 * every call): its pixel pairs without the store; called by the generator instead of
 * ec_conv2d_s8_gemm, so that models without such layers do not link it.  (Here, after
 * ec_conv2d_gemm.c in the same translation unit: its window copies and pointwise_ok.) */
void ec_conv2d_s8_gemm_rq(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *input, int8_t *output)
{
    const int32_t oc_n = p->out_c, pairs = oc_n >> 1, k4 = g->kbp >> 2;
    const int32_t out_w = p->out_w, n_pix = p->out_h * out_w, in_c = p->in_c;
    uint32_t *col = (uint32_t *)g->work;
    int8_t *tmp = (int8_t *)(col + g->kbp);
    int8_t *scratch = tmp + (in_c % 4 ? g->kbp : 0); /* (the accumulators' space: a lone pixel's second outputs) */
    const int rowwise = g->row != NULL && !g->direct;
    int8_t *row = rowwise ? g->row : NULL;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * in_c;
        int8_t *out_b = output + b * n_pix * oc_n;
        int32_t i = 0;
        if (pointwise_ok(p, g, pairs, pairs, NULL, rowwise)) { /* as pointwise_pairs */
            const int32_t run = row != NULL ? out_w : n_pix, n2 = run & ~1;
            for (int32_t r0 = 0; r0 < n_pix; r0 += run) {
                const int8_t *x = in_b + r0 * in_c;
                int8_t *d = row != NULL ? row : out_b + r0 * oc_n;
                for (int32_t j = 0; j < n2; j += 2, x += 2 * in_c, d += 2 * oc_n) {
                    ec_gemm_expand_pair(x, col, k4 >> 1);
                    g->gemm16rq(g->wbuf, col, d, pairs, k4, g->rq, d + oc_n);
                }
                if (row != NULL)
                    memcpy(out_b + r0 * oc_n, row, (size_t)(run * oc_n));
            }
            i = row != NULL ? n_pix : n2;
        }
        for (; i < n_pix;) {
            const int32_t oy = i / out_w, ox = i % out_w;
            const int two = i + 1 < n_pix && (!rowwise || ox + 1 < out_w);
            const int32_t oy1 = two ? (i + 1) / out_w : oy, ox1 = two ? (i + 1) % out_w : ox;
            int8_t *d0 = rowwise ? row + ox * oc_n : out_b + i * oc_n;
            int8_t *d1 = two ? d0 + oc_n : scratch;
            col_window(p, g, in_b, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left, 0, col, tmp);
            col_window(p, g, in_b, oy1 * p->stride_h - p->pad_top, ox1 * p->stride_w - p->pad_left, 0, col + 2, tmp);
            for (int32_t j0 = 0; j0 < pairs; j0 += g->chunk) {
                const int32_t n = pairs - j0 < g->chunk ? pairs - j0 : g->chunk;
                g->gemm16rq(g->wbuf + j0 * g->kbp, col, d0 + 2 * j0, n, k4, g->rq + 8 * j0,
                            two ? d1 + 2 * j0 : scratch);
            }
            i += two ? 2 : 1;
            if (rowwise && i % out_w == 0)
                memcpy(out_b + (i - out_w) * oc_n, row, (size_t)(out_w * oc_n));
        }
    }
}
