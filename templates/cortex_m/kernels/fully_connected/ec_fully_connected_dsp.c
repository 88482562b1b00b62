/*
 * ec_fully_connected_dsp.c - int8 fully connected layers for cores with the DSP extension (Cortex-M4/M7).
 */
#include "ec_kernels_dsp.h"
#include "ec_requant.h"
#include "ec_simd.h"

#include <string.h>

/*
 * The filter re-packed at compile time (c_codegen.pack_fc_weights): output rows in quads (zero rows
 * to a multiple of 4), each quad's inputs in groups of 4, the last group zero padded; per group the
 * 4 rows' 4 weights (int8: 16 bytes; widened, --optimize speed: per row the int16 pairs of inputs
 * (0, 2) then (1, 3), 32 bytes).  A quad function adds `groups` groups of x to acc[0..3] and returns
 * the weights after them.  With int8 weights: 22 instructions per 16 MACs, 15 widened.
 */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__GNUC__)
const int8_t *ec_fc_quad8(const int8_t *x, const int8_t *w, int32_t groups, int32_t *acc);
const int8_t *ec_fc_quad16(const int8_t *x, const int8_t *w, int32_t groups, int32_t *acc);
/* r0 x, r1 w, r2 groups left, r3 free (acc on the stack), r4-r7 the sums, r8/r9 the inputs (odd,
 * even), r10-r12 and lr the weights */
#define FC_ROW8(RW, A) \
    "    sxtb16 r3, " RW "\n" \
    "    smlad " A ", r9, r3, " A "\n" \
    "    sxtb16 " RW ", " RW ", ror #8\n" \
    "    smlad " A ", r8, " RW ", " A "\n"
#define FC_QUAD(NAME, BODY) \
    EC_ASM_FUNC(NAME) \
    "    push {r3-r11, lr}\n" \
    "    ldm r3, {r4-r7}\n" \
    "1:\n" \
    "    ldr r8, [r0], #4\n" \
    "    sxtb16 r9, r8\n" \
    "    sxtb16 r8, r8, ror #8\n" \
    BODY \
    "    subs r2, r2, #1\n" \
    "    bne 1b\n" \
    "    ldr r3, [sp]\n" \
    "    stm r3, {r4-r7}\n" \
    "    mov r0, r1\n" \
    "    pop {r3-r11, pc}\n" \
    EC_ASM_END(NAME)
__asm__(FC_QUAD("ec_fc_quad8",
                "    ldm r1!, {r10, r11, r12, lr}\n"
                FC_ROW8("r10", "r4") FC_ROW8("r11", "r5") FC_ROW8("r12", "r6") FC_ROW8("lr", "r7")));
__asm__(FC_QUAD("ec_fc_quad16",
                "    ldm r1!, {r10, r11, r12, lr}\n"
                "    smlad r4, r9, r10, r4\n"
                "    smlad r4, r8, r11, r4\n"
                "    smlad r5, r9, r12, r5\n"
                "    smlad r5, r8, lr, r5\n"
                "    ldm r1!, {r10, r11, r12, lr}\n"
                "    smlad r6, r9, r10, r6\n"
                "    smlad r6, r8, r11, r6\n"
                "    smlad r7, r9, r12, r7\n"
                "    smlad r7, r8, lr, r7\n"));
#else
/* The same arithmetic in plain C (host builds) */
static const int8_t *fc_quad(const int8_t *x, const int8_t *w, int32_t groups, int32_t *acc, int wide)
{
    for (; groups > 0; groups--, x += 4) {
        for (int32_t r = 0; r < 4; r++, w += wide ? 8 : 4) {
            int32_t s = 0;
            for (int32_t t = 0; t < 4; t++) {
                int16_t wt = w[t];
                if (wide) /* the int16 of tap t (an int16_t array in weights.c): taps 0, 2, 1, 3 */
                    memcpy(&wt, w + 2 * ((t & 1) * 2 + (t >> 1)), 2);
                s += x[t] * wt;
            }
            acc[r] = (int32_t)((uint32_t)acc[r] + (uint32_t)s);
        }
    }
    return w;
}
static const int8_t *ec_fc_quad8(const int8_t *x, const int8_t *w, int32_t groups, int32_t *acc)
{
    return fc_quad(x, w, groups, acc, 0);
}
static const int8_t *ec_fc_quad16(const int8_t *x, const int8_t *w, int32_t groups, int32_t *acc)
{
    return fc_quad(x, w, groups, acc, 1);
}
#endif

typedef const int8_t *(*fc_quad_fn)(const int8_t *x, const int8_t *w, int32_t groups, int32_t *acc);

/* TFLM's requantization in one multiply where the generator proved it exact (p->fast, see
 * ec_conv2d_gemm.c): h = SMMLAR(2a, M) onto (1 + 2 zp) << (s - 1), then (h - [a < 0]) >> s. */
EC_INLINE int32_t requant_fast(int32_t a, int32_t m, int32_t shift, int32_t zp2)
{
    const int32_t s = -shift, k = (int32_t)((uint32_t)zp2 << (s - 1)), a2 = (int32_t)((uint32_t)a << 1);
    return (ec_smmlar(a2, m, k) + (a >> 31)) >> s;
}

EC_INLINE void fc_packed(const ec_fc_params_t *p, const int8_t *input, const int8_t *w, const int32_t *bias,
                         int8_t *output, int8_t *row, fc_quad_fn quad)
{
    const int32_t n = p->in_features, groups = n >> 2, rest = n & 3, o_n = p->out_features;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * n;
        int8_t *dst = row != NULL ? row : output + b * o_n;
        /* the last inputs, zero padded to a group (no read past the input) */
        int8_t last[4] = {0, 0, 0, 0};
        for (int32_t t = 0; t < rest; t++)
            last[t] = x[4 * groups + t];
        const int8_t *wq = w;
        for (int32_t o = 0; o < o_n; o += 4) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]}; /* (padded to 4) */
            if (groups > 0)
                wq = quad(x, wq, groups, acc);
            if (rest > 0)
                wq = quad(last, wq, 1, acc);
            if (p->fast) {
                const int32_t zp2 = 1 + 2 * p->output_offset;
                for (int32_t k = 0; k < 4 && o + k < o_n; k++)
                    dst[o + k] = (int8_t)ec_clip_i32(requant_fast(acc[k], p->multiplier[o + k], p->shift[o + k], zp2),
                                                   p->act_min, p->act_max);
            } else {
                for (int32_t k = 0; k < 4 && o + k < o_n; k++) {
                    const int32_t v = ec_mbqm(acc[k], p->multiplier[o + k], p->shift[o + k]);
                    dst[o + k] = (int8_t)ec_clip_i32(v + p->output_offset, p->act_min, p->act_max);
                }
            }
        }
        if (row != NULL)
            memcpy(output + b * o_n, row, (size_t)o_n);
    }
}

void ec_fully_connected_s8_dsp(const ec_fc_params_t *p, const int8_t *input, const int8_t *filter,
                               const int32_t *bias, int8_t *output, int8_t *row)
{
    fc_packed(p, input, filter, bias, output, row, ec_fc_quad8);
}

void ec_fully_connected_s8_dsp16(const ec_fc_params_t *p, const int8_t *input, const int8_t *filter,
                                 const int32_t *bias, int8_t *output, int8_t *row)
{
    fc_packed(p, input, filter, bias, output, row, ec_fc_quad16);
}
