/*
 * ec_kernels_mve.c - int8 kernels with Helium (MVE) intrinsics; see ec_kernels_mve.h.
 *
 * Matrix products (convolution, fully connected): VMLADAVA.S8 adds the 16 products of two int8
 * vectors to a general register.  A convolution takes two output pixels by three output
 * channels per pass (two window loads and three filter loads feed six VMLADAVAs: 12 instructions
 * per 96 MACs with the loop end), a fully connected layer one input by six rows.  The loops are
 * written in assembly to pin the accumulators to the even registers VMLADAVA needs and to run
 * under DLSTP/LETP: the last pass predicates away the lanes past K.
 *
 * Requantization is TFLite's MultiplyByQuantizedMultiplier on four lanes: VSHL by the left
 * shift, VQRDMULH (exactly gemmlowp's SaturatingRoundingDoublingHighMul: both round half up
 * and saturate only INT32_MIN * INT32_MIN), then RoundingDivideByPOT as "minus one if negative,
 * then VRSHL" (round half away from zero), the zero point, the activation clamp.
 */
#include "ec_kernels_mve.h"

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)

#include <arm_mve.h>
#include <string.h>

#if defined(__GNUC__)
#define EC_MVE_HOT __attribute__((noinline, optimize("O2")))
#define EC_MVE_INLINE static inline __attribute__((always_inline))
#else
#define EC_MVE_HOT
#define EC_MVE_INLINE static inline
#endif

/* ---- bytes --------------------------------------------------------------------------------- */

EC_MVE_INLINE void copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    __asm__ volatile("   wlstp.8 lr, %[n], 2f\n"
                     "1: vldrb.8 q0, [%[s]], #16\n"
                     "   vstrb.8 q0, [%[d]], #16\n"
                     "   letp lr, 1b\n"
                     "2:\n"
                     : [d] "+r"(dst), [s] "+r"(src)
                     : [n] "r"(n)
                     : "q0", "lr", "memory");
}

EC_MVE_INLINE void fill_bytes(int8_t *dst, int8_t value, int32_t n)
{
    __asm__ volatile("   vdup.8 q0, %[v]\n"
                     "   wlstp.8 lr, %[n], 2f\n"
                     "1: vstrb.8 q0, [%[d]], #16\n"
                     "   letp lr, 1b\n"
                     "2:\n"
                     : [d] "+r"(dst)
                     : [n] "r"(n), [v] "r"((int32_t)value)
                     : "q0", "lr", "memory");
}

/* ---- requantization ------------------------------------------------------------------------ */

typedef struct {
    int32x4_t bias, mult, left, right; /* right <= 0: VRSHL by it divides */
} ec_mve_rq_t;

EC_MVE_INLINE ec_mve_rq_t load_rq(const int32_t *h, int32_t stride)
{
    ec_mve_rq_t r;
    r.bias = vldrwq_s32(h);
    r.mult = vldrwq_s32(h + stride);
    r.left = vldrwq_s32(h + 2 * stride);
    r.right = vldrwq_s32(h + 3 * stride);
    return r;
}

/* (acc + bias) * 2^left * mult / 2^31 / 2^-right, TFLite rounding, + zp, clamped */
EC_MVE_INLINE int32x4_t requantize(int32x4_t acc, const ec_mve_rq_t *r, int32_t zp, int32x4_t lo, int32x4_t hi)
{
    acc = vaddq_s32(acc, r->bias);
    acc = vshlq_s32(acc, r->left);
    acc = vqrdmulhq_s32(acc, r->mult);
    acc = vqaddq_s32(acc, vshrq_n_s32(vandq_s32(acc, r->right), 31)); /* -1 where negative and shifted */
    acc = vrshlq_s32(acc, r->right);
    acc = vaddq_n_s32(acc, zp);
    return vminq_s32(vmaxq_s32(acc, lo), hi);
}

/* RoundingDivideByPOT by a scalar exponent e >= 0; fixmask = e ? -1 : 0 */
EC_MVE_INLINE int32x4_t rdbpot_n(int32x4_t x, int32_t e, int32x4_t fixmask)
{
    x = vqaddq_s32(x, vandq_s32(vshrq_n_s32(x, 31), fixmask));
    return vrshlq_n_s32(x, -e);
}

/* TFLite's int8 ADD on four lanes (a, b: the raw int8 values); clamped to the add's activation. */
typedef struct {
    int32x4_t fix1, fix2, fixo, lo, hi;
} ec_mve_add_t;

EC_MVE_INLINE ec_mve_add_t add_consts(const ec_add_params_t *p)
{
    ec_mve_add_t c;
    c.fix1 = vdupq_n_s32(p->input1_shift ? -1 : 0);
    c.fix2 = vdupq_n_s32(p->input2_shift ? -1 : 0);
    c.fixo = vdupq_n_s32(p->output_shift ? -1 : 0);
    c.lo = vdupq_n_s32(p->act_min);
    c.hi = vdupq_n_s32(p->act_max);
    return c;
}

EC_MVE_INLINE int32x4_t add_lanes(const ec_add_params_t *p, const ec_mve_add_t *c, int32x4_t a, int32x4_t b)
{
    int32x4_t x1 = vshlq_r_s32(vaddq_n_s32(a, p->input1_offset), p->left_shift);
    int32x4_t x2 = vshlq_r_s32(vaddq_n_s32(b, p->input2_offset), p->left_shift);
    x1 = rdbpot_n(vqrdmulhq_n_s32(x1, p->input1_multiplier), -p->input1_shift, c->fix1);
    x2 = rdbpot_n(vqrdmulhq_n_s32(x2, p->input2_multiplier), -p->input2_shift, c->fix2);
    int32x4_t y = rdbpot_n(vqrdmulhq_n_s32(vaddq_s32(x1, x2), p->output_multiplier), -p->output_shift, c->fixo);
    y = vaddq_n_s32(y, p->output_offset);
    return vminq_s32(vmaxq_s32(y, c->lo), c->hi);
}

/* ---- matrix products ------------------------------------------------------------------------- */

/* Two windows (x0, x1: k bytes each) times three filter rows interleaved per 16-byte chunk. */
EC_MVE_INLINE void dot_2x3(const int8_t *x0, const int8_t *x1, const int8_t *w, int32_t k, int32x4_t *o0,
                           int32x4_t *o1)
{
    register int32_t a0 __asm__("r0") = 0;
    register int32_t a1 __asm__("r2") = 0;
    register int32_t a2 __asm__("r4") = 0;
    register int32_t b0 __asm__("r6") = 0;
    register int32_t b1 __asm__("r8") = 0;
    register int32_t b2 __asm__("r10") = 0;
    __asm__ volatile("   dlstp.8 lr, %[k]\n"
                     "1: vldrb.8 q0, [%[x0]], #16\n"
                     "   vldrb.8 q1, [%[x1]], #16\n"
                     "   vldrb.8 q2, [%[w]], #16\n"
                     "   vmladava.s8 %[a0], q0, q2\n"
                     "   vmladava.s8 %[b0], q1, q2\n"
                     "   vldrb.8 q2, [%[w]], #16\n"
                     "   vmladava.s8 %[a1], q0, q2\n"
                     "   vmladava.s8 %[b1], q1, q2\n"
                     "   vldrb.8 q2, [%[w]], #16\n"
                     "   vmladava.s8 %[a2], q0, q2\n"
                     "   vmladava.s8 %[b2], q1, q2\n"
                     "   letp lr, 1b\n"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [b0] "+r"(b0), [b1] "+r"(b1), [b2] "+r"(b2),
                       [x0] "+r"(x0), [x1] "+r"(x1), [w] "+r"(w)
                     : [k] "r"(k)
                     : "q0", "q1", "q2", "lr", "memory");
    int32x4_t v0, v1;
    /* VMOV Qd[2], Qd[0], Rt, Rt2 writes Rt to lane 0 and Rt2 to lane 2 */
    __asm__("vmov %q[v][2], %q[v][0], %[a], %[c]\n\tvmov %q[v][3], %q[v][1], %[b], %[b]"
            : [v] "=w"(v0) : [a] "r"(a0), [b] "r"(a1), [c] "r"(a2));
    __asm__("vmov %q[v][2], %q[v][0], %[a], %[c]\n\tvmov %q[v][3], %q[v][1], %[b], %[b]"
            : [v] "=w"(v1) : [a] "r"(b0), [b] "r"(b1), [c] "r"(b2));
    *o0 = v0;
    *o1 = v1;
}

/* One input (k bytes) times six filter rows interleaved per 16-byte chunk. */
EC_MVE_INLINE void dot_1x6(const int8_t *x, const int8_t *w, int32_t k, int32x4_t *o0, int32x4_t *o1)
{
    register int32_t a0 __asm__("r0") = 0;
    register int32_t a1 __asm__("r2") = 0;
    register int32_t a2 __asm__("r4") = 0;
    register int32_t a3 __asm__("r6") = 0;
    register int32_t a4 __asm__("r8") = 0;
    register int32_t a5 __asm__("r10") = 0;
    __asm__ volatile("   dlstp.8 lr, %[k]\n"
                     "1: vldrb.8 q0, [%[x]], #16\n"
                     "   vldrb.8 q1, [%[w]], #16\n"
                     "   vmladava.s8 %[a0], q0, q1\n"
                     "   vldrb.8 q2, [%[w]], #16\n"
                     "   vmladava.s8 %[a1], q0, q2\n"
                     "   vldrb.8 q1, [%[w]], #16\n"
                     "   vmladava.s8 %[a2], q0, q1\n"
                     "   vldrb.8 q2, [%[w]], #16\n"
                     "   vmladava.s8 %[a3], q0, q2\n"
                     "   vldrb.8 q1, [%[w]], #16\n"
                     "   vmladava.s8 %[a4], q0, q1\n"
                     "   vldrb.8 q2, [%[w]], #16\n"
                     "   vmladava.s8 %[a5], q0, q2\n"
                     "   letp lr, 1b\n"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4), [a5] "+r"(a5),
                       [x] "+r"(x), [w] "+r"(w)
                     : [k] "r"(k)
                     : "q0", "q1", "q2", "lr", "memory");
    int32x4_t v0, v1;
    __asm__("vmov %q[v][2], %q[v][0], %[a], %[c]\n\tvmov %q[v][3], %q[v][1], %[b], %[d]"
            : [v] "=w"(v0) : [a] "r"(a0), [b] "r"(a1), [c] "r"(a2), [d] "r"(a3));
    __asm__("vmov %q[v][2], %q[v][0], %[a], %[a]\n\tvmov %q[v][3], %q[v][1], %[b], %[b]"
            : [v] "=w"(v1) : [a] "r"(a4), [b] "r"(a5));
    *o0 = v0;
    *o1 = v1;
}

/* ---- convolution ----------------------------------------------------------------------------- */

/*
 * Every channel group of two pixels, in assembly: for a layer without left shifts and without a
 * fused residual add (the common case).  Per group of 3 channels: the accumulators start from
 * the folded bias, the 2x3 block loop, then both pixels requantized on four lanes and stored
 * (VCTP on the channels left: the last group writes only its own).  37 + 12 * ceil(k / 16)
 * instructions a group.
 */
typedef struct {
    const int8_t *x0, *x1; /* the two windows (k bytes each) */
    const int8_t *packed;  /* the packed filter (EC_MVE_CONV_GROUP_BYTES(k) per group) */
    int8_t *d0, *d1;       /* where the two pixels' out_c bytes go */
    int32_t k, out_c, zp, lo, hi;
} ec_mve_conv_job_t;

void ec_mve_conv_groups(const ec_mve_conv_job_t *job);

__asm__("    .section .text.ec_mve_conv_groups,\"ax\",%progbits\n"
        "    .global ec_mve_conv_groups\n"
        "    .type ec_mve_conv_groups, %function\n"
        "    .syntax unified\n"
        "    .thumb\n"
        "    .thumb_func\n"
        "    .p2align 2\n"
        "ec_mve_conv_groups:\n"
        "    push {r4-r11, lr}\n"
        "    vpush {d8-d15}\n"
        "    sub sp, sp, #16\n"
        "    ldr r1, [r0, #32]\n"          /* lo, hi: q3, q4 */
        "    vdup.32 q3, r1\n"
        "    ldr r1, [r0, #36]\n"
        "    vdup.32 q4, r1\n"
        "    ldrd r1, r2, [r0, #0]\n"      /* [sp] x0, [sp, #4] x1, [sp, #8] zp */
        "    ldr r3, [r0, #28]\n"
        "    strd r1, r2, [sp]\n"
        "    str r3, [sp, #8]\n"
        "    ldr r5, [r0, #8]\n"           /* r5 packed, r7 k, r1 d0, r3 d1, r12 channels left */
        "    ldrd r1, r3, [r0, #12]\n"
        "    ldrd r7, r12, [r0, #20]\n"
        "1:  ldrd r0, r2, [r5]\n"          /* accumulators = bias (r0 r2 r4: pixel 0, r6 r8 r10: pixel 1) */
        "    ldr r4, [r5, #8]\n"
        "    vldrw.u32 q6, [r5, #16]\n"     /* multipliers */
        "    vldrw.u32 q7, [r5, #48]\n"     /* right shifts (<= 0) */
        "    adds r5, r5, #64\n"
        "    mov r6, r0\n"
        "    mov r8, r2\n"
        "    mov r10, r4\n"
        "    ldrd r9, r11, [sp]\n"         /* the windows: r9, r11 */
        "    dlstp.8 lr, r7\n"
        "2:  vldrb.8 q0, [r9], #16\n"
        "    vldrb.8 q1, [r11], #16\n"
        "    vldrb.8 q2, [r5], #16\n"
        "    vmladava.s8 r0, q0, q2\n"
        "    vmladava.s8 r6, q1, q2\n"
        "    vldrb.8 q2, [r5], #16\n"
        "    vmladava.s8 r2, q0, q2\n"
        "    vmladava.s8 r8, q1, q2\n"
        "    vldrb.8 q2, [r5], #16\n"
        "    vmladava.s8 r4, q0, q2\n"
        "    vmladava.s8 r10, q1, q2\n"
        "    letp lr, 2b\n"
        "    vmov q0[2], q0[0], r0, r4\n"
        "    vmov q0[3], q0[1], r2, r2\n"
        "    vmov q1[2], q1[0], r6, r10\n"
        "    vmov q1[3], q1[1], r8, r8\n"
        "    ldr r0, [sp, #8]\n"
        "    vqrdmulh.s32 q0, q0, q6\n"
        "    vqrdmulh.s32 q1, q1, q6\n"
        "    vand q2, q0, q7\n"
        "    vand q5, q1, q7\n"
        "    vshr.s32 q2, q2, #31\n"
        "    vshr.s32 q5, q5, #31\n"
        "    vqadd.s32 q0, q0, q2\n"
        "    vqadd.s32 q1, q1, q5\n"
        "    vrshl.s32 q0, q0, q7\n"
        "    vrshl.s32 q1, q1, q7\n"
        "    vadd.i32 q0, q0, r0\n"
        "    vadd.i32 q1, q1, r0\n"
        "    vmax.s32 q0, q0, q3\n"
        "    vmax.s32 q1, q1, q3\n"
        "    vmin.s32 q0, q0, q4\n"
        "    vmin.s32 q1, q1, q4\n"
        "    vctp.32 r12\n"
        "    vpstt\n"
        "    vstrbt.32 q0, [r1], #3\n"
        "    vstrbt.32 q1, [r3], #3\n"
        "    subs r12, r12, #3\n"
        "    bgt 1b\n"
        "    add sp, sp, #16\n"
        "    vpop {d8-d15}\n"
        "    pop {r4-r11, pc}\n"
        "    .size ec_mve_conv_groups, .-ec_mve_conv_groups\n"
        "    .text\n");

/* The same for one pixel (a row's last of an odd width): 22 + 8 * ceil(k / 16) instructions a group. */
void ec_mve_conv_groups1(const ec_mve_conv_job_t *job);

__asm__("    .section .text.ec_mve_conv_groups1,\"ax\",%progbits\n"
        "    .global ec_mve_conv_groups1\n"
        "    .type ec_mve_conv_groups1, %function\n"
        "    .syntax unified\n"
        "    .thumb\n"
        "    .thumb_func\n"
        "    .p2align 2\n"
        "ec_mve_conv_groups1:\n"
        "    push {r4-r11, lr}\n"
        "    vpush {d8-d15}\n"
        "    ldr r1, [r0, #32]\n"          /* lo, hi: q3, q4 */
        "    vdup.32 q3, r1\n"
        "    ldr r1, [r0, #36]\n"
        "    vdup.32 q4, r1\n"
        "    ldr r8, [r0, #28]\n"          /* r8 zero point, r9 the window, r5 packed, r1 output */
        "    ldr r9, [r0, #0]\n"
        "    ldr r5, [r0, #8]\n"
        "    ldr r1, [r0, #12]\n"
        "    ldrd r7, r12, [r0, #20]\n"    /* r7 k, r12 channels left */
        "1:  ldrd r0, r2, [r5]\n"          /* accumulators r0 r2 r4 = bias */
        "    ldr r4, [r5, #8]\n"
        "    vldrw.u32 q6, [r5, #16]\n"
        "    vldrw.u32 q7, [r5, #48]\n"
        "    adds r5, r5, #64\n"
        "    mov r11, r9\n"
        "    dlstp.8 lr, r7\n"
        "2:  vldrb.8 q0, [r11], #16\n"
        "    vldrb.8 q2, [r5], #16\n"
        "    vmladava.s8 r0, q0, q2\n"
        "    vldrb.8 q2, [r5], #16\n"
        "    vmladava.s8 r2, q0, q2\n"
        "    vldrb.8 q2, [r5], #16\n"
        "    vmladava.s8 r4, q0, q2\n"
        "    letp lr, 2b\n"
        "    vmov q0[2], q0[0], r0, r4\n"
        "    vmov q0[3], q0[1], r2, r2\n"
        "    vqrdmulh.s32 q0, q0, q6\n"
        "    vand q2, q0, q7\n"
        "    vshr.s32 q2, q2, #31\n"
        "    vqadd.s32 q0, q0, q2\n"
        "    vrshl.s32 q0, q0, q7\n"
        "    vadd.i32 q0, q0, r8\n"
        "    vmax.s32 q0, q0, q3\n"
        "    vmin.s32 q0, q0, q4\n"
        "    vctp.32 r12\n"
        "    vpst\n"
        "    vstrbt.32 q0, [r1], #3\n"
        "    subs r12, r12, #3\n"
        "    bgt 1b\n"
        "    vpop {d8-d15}\n"
        "    pop {r4-r11, pc}\n"
        "    .size ec_mve_conv_groups1, .-ec_mve_conv_groups1\n"
        "    .text\n");

/* The kernel window of output pixel (oy, ox), taps in the padding set to the input zero point. */
static void window(const ec_conv_params_t *p, const int8_t *in, int32_t oy, int32_t ox, int8_t *dst, int8_t fill)
{
    const int32_t in_c = p->in_c, kw = p->kernel_w;
    const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    int32_t kx0, kx1;
    ec_tap_range(ix0, p->dilation_w, kw, p->in_w, &kx0, &kx1);
    if (kx0 == 0 && kx1 == kw && p->dilation_w == 1 && iy0 >= 0 && iy0 + (p->kernel_h - 1) * p->dilation_h < p->in_h) {
        const int8_t *src = in + (iy0 * p->in_w + ix0) * in_c; /* inside: one copy a kernel row */
        for (int32_t ky = 0; ky < p->kernel_h; ky++, dst += kw * in_c, src += p->dilation_h * p->in_w * in_c)
            copy_bytes(dst, src, kw * in_c);
        return;
    }
    for (int32_t ky = 0; ky < p->kernel_h; ky++, dst += kw * in_c) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        if (iy < 0 || iy >= p->in_h || kx0 >= kx1) {
            fill_bytes(dst, fill, kw * in_c);
        } else if (p->dilation_w == 1) {
            fill_bytes(dst, fill, kx0 * in_c);
            copy_bytes(dst + kx0 * in_c, in + (iy * p->in_w + ix0 + kx0) * in_c, (kx1 - kx0) * in_c);
            fill_bytes(dst + kx1 * in_c, fill, (kw - kx1) * in_c);
        } else {
            for (int32_t kx = 0; kx < kw; kx++) {
                if (kx >= kx0 && kx < kx1)
                    copy_bytes(dst + kx * in_c, in + (iy * p->in_w + ix0 + kx * p->dilation_w) * in_c, in_c);
                else
                    fill_bytes(dst + kx * in_c, fill, in_c);
            }
        }
    }
}

/* Every output channel of two pixels (x1 == x0 and d1 == NULL: one pixel). */
static EC_MVE_HOT void conv_pixels(const ec_conv_params_t *p, const int8_t *x0, const int8_t *x1,
                                   const int8_t *packed, int32_t k, int8_t *d0, int8_t *d1, const int8_t *s0,
                                   const int8_t *s1)
{
    const int32_t gbytes = EC_MVE_CONV_GROUP_BYTES(k);
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const ec_add_params_t *res = p->residual;
    ec_mve_add_t rc;
    if (res != NULL)
        rc = add_consts(res);
    for (int32_t oc = 0; oc < p->out_c; oc += EC_MVE_CONV_GROUP, packed += gbytes) {
        const int32_t n = p->out_c - oc;
        const mve_pred16_t keep = vctp32q((uint32_t)(n < EC_MVE_CONV_GROUP ? n : EC_MVE_CONV_GROUP));
        const ec_mve_rq_t rq = load_rq((const int32_t *)packed, 4);
        int32x4_t v0, v1;
        dot_2x3(x0, x1, packed + 64, k, &v0, &v1);
        v0 = requantize(v0, &rq, p->output_offset, lo, hi);
        if (res != NULL)
            v0 = add_lanes(res, &rc, v0, vldrbq_z_s32(s0 + oc, keep));
        vstrbq_p_s32(d0 + oc, v0, keep);
        if (d1 != NULL) {
            v1 = requantize(v1, &rq, p->output_offset, lo, hi);
            if (res != NULL)
                v1 = add_lanes(res, &rc, v1, vldrbq_z_s32(s1 + oc, keep));
            vstrbq_p_s32(d1 + oc, v1, keep);
        }
    }
}

void ec_conv2d_s8_mve(const ec_conv_params_t *p, const int8_t *input, const int8_t *packed, int8_t *output,
                      int8_t *row, const int8_t *skip, int8_t *work)
{
    const int32_t in_c = p->in_c, out_c = p->out_c;
    const int32_t k = p->kernel_h * p->kernel_w * in_c;
    const int32_t row_len = p->out_w * out_c;
    const int direct = p->kernel_h == 1 && p->kernel_w == 1 && p->pad_top == 0 && p->pad_left == 0;
    const int8_t fill = (int8_t)(-p->input_offset);
    int general = p->residual != NULL; /* the assembly groups: no residual add, no left shift */
    for (int32_t oc = 0; oc < out_c && !general; oc++)
        general = p->shift[oc] > 0;
    ec_mve_conv_job_t job = {0};
    job.packed = packed;
    job.k = k;
    job.out_c = out_c;
    job.zp = p->output_offset;
    job.lo = p->act_min;
    job.hi = p->act_max;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int8_t *sk = skip != NULL ? skip + out_row : NULL;
            for (int32_t ox = 0; ox < p->out_w; ox += 2) {
                const int two = ox + 1 < p->out_w;
                const int8_t *x0, *x1;
                if (direct) {
                    x0 = in_b + (oy * p->stride_h * p->in_w + ox * p->stride_w) * in_c;
                    x1 = two ? x0 + p->stride_w * in_c : x0;
                } else {
                    window(p, in_b, oy, ox, work, fill);
                    if (two)
                        window(p, in_b, oy, ox + 1, work + k, fill);
                    x0 = work;
                    x1 = two ? work + k : work;
                }
                if (!general) {
                    job.x0 = x0;
                    job.x1 = x1;
                    job.d0 = dst + ox * out_c;
                    job.d1 = job.d0 + out_c;
                    if (two)
                        ec_mve_conv_groups(&job);
                    else
                        ec_mve_conv_groups1(&job);
                } else {
                    conv_pixels(p, x0, x1, packed, k, dst + ox * out_c, two ? dst + (ox + 1) * out_c : NULL,
                                sk != NULL ? sk + ox * out_c : NULL, sk != NULL ? sk + (ox + 1) * out_c : NULL);
                }
            }
            if (row != NULL)
                copy_bytes(output + out_row, row, row_len);
        }
    }
}

/* ---- fully connected --------------------------------------------------------------------------- */

void EC_MVE_HOT ec_fully_connected_s8_mve(const ec_fc_params_t *p, const int8_t *input, const int8_t *packed,
                                          int8_t *output, int8_t *row)
{
    const int32_t n_in = p->in_features, n_out = p->out_features;
    const int32_t gbytes = EC_MVE_FC_GROUP_BYTES(n_in);
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * n_in;
        int8_t *dst = row != NULL ? row : output + b * n_out;
        const int8_t *w = packed;
        for (int32_t o = 0; o < n_out; o += EC_MVE_FC_GROUP, w += gbytes) {
            const ec_mve_rq_t r0 = load_rq((const int32_t *)w, 8);
            const ec_mve_rq_t r1 = load_rq((const int32_t *)w + 4, 8);
            int32x4_t v0, v1;
            dot_1x6(x, w + 128, n_in, &v0, &v1);
            vstrbq_p_s32(dst + o, requantize(v0, &r0, p->output_offset, lo, hi), vctp32q((uint32_t)(n_out - o)));
            if (n_out - o > 4)
                vstrbq_p_s32(dst + o + 4, requantize(v1, &r1, p->output_offset, lo, hi),
                             vctp32q((uint32_t)(n_out - o - 4)));
        }
        if (row != NULL)
            copy_bytes(output + b * n_out, row, n_out);
    }
}

/* ---- depthwise convolution --------------------------------------------------------------------- */

/* Even and odd channels back into one int16 vector of eight. */
EC_MVE_INLINE int16x8_t interleave(int32x4_t even, int32x4_t odd)
{
    int16x8_t v = vdupq_n_s16(0);
    v = vmovnbq_s32(v, even);
    return vmovntq_s32(v, odd);
}

/* Requantize with the constants of a packed header (h: bias, then multiplier, left, right every 16 words). */
EC_MVE_INLINE int32x4_t requantize_h(int32x4_t acc, const int32_t *h, int left, int32_t zp, int32x4_t lo,
                                     int32x4_t hi)
{
    if (left)
        acc = vshlq_s32(acc, vldrwq_s32(h + 32));
    acc = vqrdmulhq_s32(acc, vldrwq_s32(h + 16));
    const int32x4_t right = vldrwq_s32(h + 48);
    acc = vqaddq_s32(acc, vshrq_n_s32(vandq_s32(acc, right), 31));
    acc = vrshlq_s32(acc, right);
    acc = vaddq_n_s32(acc, zp);
    return vminq_s32(vmaxq_s32(acc, lo), hi);
}

/*
 * Every channel of one output pixel.  t: the address of each kernel tap's input pixel (the
 * zero-point row for taps in the padding).  Per group of 16 channels, per tap: the 16 weights
 * and the 16 inputs widened to 16 bits as they load (two halves of 8), VMULLB / VMULLT for the
 * even and odd channels' 32-bit products (13 instructions per 16 MACs with the loop end).
 */
static EC_MVE_HOT void dw_pixel(const ec_conv_params_t *p, const int8_t *const *t, const int8_t *packed,
                                int8_t *d, const int8_t *s, int left)
{
    const int32_t taps = p->kernel_h * p->kernel_w, gbytes = EC_MVE_DW_GROUP_BYTES(taps);
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const int32_t zp = p->output_offset;
    for (int32_t c = 0; c < p->in_c; c += EC_MVE_DW_GROUP, packed += gbytes) {
        const int32_t *h = (const int32_t *)packed;
        const int8_t *w = packed + 256;
        int32x4_t e0 = vldrwq_s32(h), o0 = vldrwq_s32(h + 4), e1 = vldrwq_s32(h + 8), o1 = vldrwq_s32(h + 12);
        const int32_t n = p->in_c - c;
        const mve_pred16_t keep0 = vctp16q((uint32_t)n), keep1 = vctp16q((uint32_t)(n > 8 ? n - 8 : 0));
        if (n >= EC_MVE_DW_GROUP) {
            for (int32_t k = 0; k < taps; k++, w += EC_MVE_DW_GROUP) {
                const int8_t *x = t[k] + c;
                const int16x8_t w0 = vldrbq_s16(w), w1 = vldrbq_s16(w + 8);
                const int16x8_t x0 = vldrbq_s16(x), x1 = vldrbq_s16(x + 8);
                e0 = vaddq_s32(e0, vmullbq_int_s16(x0, w0));
                o0 = vaddq_s32(o0, vmulltq_int_s16(x0, w0));
                e1 = vaddq_s32(e1, vmullbq_int_s16(x1, w1));
                o1 = vaddq_s32(o1, vmulltq_int_s16(x1, w1));
            }
        } else { /* the last channels: nothing read past them */
            for (int32_t k = 0; k < taps; k++, w += EC_MVE_DW_GROUP) {
                const int8_t *x = t[k] + c;
                const int16x8_t w0 = vldrbq_s16(w), w1 = vldrbq_s16(w + 8);
                const int16x8_t x0 = vldrbq_z_s16(x, keep0), x1 = vldrbq_z_s16(x + 8, keep1);
                e0 = vaddq_s32(e0, vmullbq_int_s16(x0, w0));
                o0 = vaddq_s32(o0, vmulltq_int_s16(x0, w0));
                e1 = vaddq_s32(e1, vmullbq_int_s16(x1, w1));
                o1 = vaddq_s32(o1, vmulltq_int_s16(x1, w1));
            }
        }
        e0 = requantize_h(e0, h, left, zp, lo, hi);
        o0 = requantize_h(o0, h + 4, left, zp, lo, hi);
        e1 = requantize_h(e1, h + 8, left, zp, lo, hi);
        o1 = requantize_h(o1, h + 12, left, zp, lo, hi);
        if (p->residual != NULL) {
            const ec_mve_add_t rc = add_consts(p->residual);
            const int16x8_t a = vldrbq_z_s16(s + c, keep0), b = vldrbq_z_s16(s + c + 8, keep1);
            e0 = add_lanes(p->residual, &rc, e0, vmovlbq_s16(a));
            o0 = add_lanes(p->residual, &rc, o0, vmovltq_s16(a));
            e1 = add_lanes(p->residual, &rc, e1, vmovlbq_s16(b));
            o1 = add_lanes(p->residual, &rc, o1, vmovltq_s16(b));
        }
        vstrbq_p_s16(d + c, interleave(e0, o0), keep0);
        vstrbq_p_s16(d + c + 8, interleave(e1, o1), keep1);
    }
}

/*
 * One output pixel of a depthwise layer, every channel, in assembly: for a layer without left
 * shifts and without a fused residual add.  t: the address each kernel tap reads.  Per group of
 * 16 channels: the accumulators start from the folded bias; per tap the 16 weights and inputs
 * widened as they load (two halves of 8), VMULLB / VMULLT and VADD (15 instructions per 16 MACs
 * with the loop end); then four requantized vectors, narrowed pairwise (VMOVNT) and stored.  The
 * last group (fewer than 16 channels) predicates its input loads and stores.
 */
typedef struct {
    const int8_t *const *t; /* the taps' input addresses */
    const int8_t *packed;
    int8_t *d;
    int32_t taps, channels, zp, lo, hi;
    int32_t offset; /* added to every tap address (the pixel's distance from the one t[] was made for) */
} ec_mve_dw_job_t;

void ec_mve_dw_pixel(const ec_mve_dw_job_t *job);

__asm__("    .section .text.ec_mve_dw_pixel,\"ax\",%progbits\n"
        "    .global ec_mve_dw_pixel\n"
        "    .type ec_mve_dw_pixel, %function\n"
        "    .syntax unified\n"
        "    .thumb\n"
        "    .thumb_func\n"
        "    .p2align 2\n"
        "ec_mve_dw_pixel:\n"
        "    push {r4-r11, lr}\n"
        "    vpush {d8-d15}\n"
        "    ldrd r6, r2, [r0, #0]\n"       /* r6 taps table, r2 packed group */
        "    ldrd r3, r4, [r0, #8]\n"       /* r3 output, r4 taps */
        "    ldrd r5, r8, [r0, #16]\n"      /* r5 channels left, r8 zero point */
        "    ldrd r9, r10, [r0, #24]\n"     /* lo, hi: on the stack */
        "    sub sp, sp, #8\n"
        "    strd r9, r10, [sp]\n"
        "    lsls r11, r4, #4\n"            /* r11 group bytes: 256 + 16 * taps */
        "    add r11, r11, #256\n"
        "    ldr r7, [r0, #32]\n"           /* r7 offset of the channels (and of the pixel) */
        "1:  vldrw.u32 q4, [r2]\n"          /* accumulators = bias */
        "    vldrw.u32 q5, [r2, #16]\n"
        "    vldrw.u32 q6, [r2, #32]\n"
        "    vldrw.u32 q7, [r2, #48]\n"
        "    add r1, r2, #256\n"            /* r1 weights */
        "    mov r12, r6\n"
        "    cmp r5, #16\n"
        "    blt 3f\n"
        "    dls lr, r4\n"
        "2:  ldr r0, [r12], #4\n"
        "    add r0, r0, r7\n"
        "    vldrb.s16 q0, [r1], #8\n"
        "    vldrb.s16 q1, [r0]\n"
        "    vmullb.s16 q2, q1, q0\n"
        "    vadd.i32 q4, q4, q2\n"
        "    vmullt.s16 q2, q1, q0\n"
        "    vadd.i32 q5, q5, q2\n"
        "    vldrb.s16 q0, [r1], #8\n"
        "    vldrb.s16 q1, [r0, #8]\n"
        "    vmullb.s16 q2, q1, q0\n"
        "    vadd.i32 q6, q6, q2\n"
        "    vmullt.s16 q2, q1, q0\n"
        "    vadd.i32 q7, q7, q2\n"
        "    le lr, 2b\n"
        "    b 4f\n"
        "3:  vctp.16 r5\n"                  /* the last channels: r9, r10 the predicates of both halves */
        "    vmrs r9, p0\n"
        "    subs r10, r5, #8\n"
        "    it lt\n"
        "    movlt r10, #0\n"
        "    vctp.16 r10\n"
        "    vmrs r10, p0\n"
        "    dls lr, r4\n"
        "7:  ldr r0, [r12], #4\n"
        "    add r0, r0, r7\n"
        "    vldrb.s16 q0, [r1], #8\n"
        "    vmsr p0, r9\n"
        "    vpst\n"
        "    vldrbt.s16 q1, [r0]\n"
        "    vmullb.s16 q2, q1, q0\n"
        "    vadd.i32 q4, q4, q2\n"
        "    vmullt.s16 q2, q1, q0\n"
        "    vadd.i32 q5, q5, q2\n"
        "    vldrb.s16 q0, [r1], #8\n"
        "    vmsr p0, r10\n"
        "    vpst\n"
        "    vldrbt.s16 q1, [r0, #8]\n"
        "    vmullb.s16 q2, q1, q0\n"
        "    vadd.i32 q6, q6, q2\n"
        "    vmullt.s16 q2, q1, q0\n"
        "    vadd.i32 q7, q7, q2\n"
        "    le lr, 7b\n"
        "4:  ldrd r0, r12, [sp]\n"
        "    vdup.32 q0, r0\n"
        "    vdup.32 q1, r12\n"
        "    vldrw.u32 q2, [r2, #64]\n"      /* requantize: q4 */
        "    vqrdmulh.s32 q4, q4, q2\n"
        "    vldrw.u32 q2, [r2, #192]\n"
        "    vand q3, q4, q2\n"
        "    vshr.s32 q3, q3, #31\n"
        "    vqadd.s32 q4, q4, q3\n"
        "    vrshl.s32 q4, q4, q2\n"
        "    vadd.i32 q4, q4, r8\n"
        "    vmax.s32 q4, q4, q0\n"
        "    vmin.s32 q4, q4, q1\n"
        "    vldrw.u32 q2, [r2, #80]\n"      /* q5 */
        "    vqrdmulh.s32 q5, q5, q2\n"
        "    vldrw.u32 q2, [r2, #208]\n"
        "    vand q3, q5, q2\n"
        "    vshr.s32 q3, q3, #31\n"
        "    vqadd.s32 q5, q5, q3\n"
        "    vrshl.s32 q5, q5, q2\n"
        "    vadd.i32 q5, q5, r8\n"
        "    vmax.s32 q5, q5, q0\n"
        "    vmin.s32 q5, q5, q1\n"
        "    vldrw.u32 q2, [r2, #96]\n"      /* q6 */
        "    vqrdmulh.s32 q6, q6, q2\n"
        "    vldrw.u32 q2, [r2, #224]\n"
        "    vand q3, q6, q2\n"
        "    vshr.s32 q3, q3, #31\n"
        "    vqadd.s32 q6, q6, q3\n"
        "    vrshl.s32 q6, q6, q2\n"
        "    vadd.i32 q6, q6, r8\n"
        "    vmax.s32 q6, q6, q0\n"
        "    vmin.s32 q6, q6, q1\n"
        "    vldrw.u32 q2, [r2, #112]\n"     /* q7 */
        "    vqrdmulh.s32 q7, q7, q2\n"
        "    vldrw.u32 q2, [r2, #240]\n"
        "    vand q3, q7, q2\n"
        "    vshr.s32 q3, q3, #31\n"
        "    vqadd.s32 q7, q7, q3\n"
        "    vrshl.s32 q7, q7, q2\n"
        "    vadd.i32 q7, q7, r8\n"
        "    vmax.s32 q7, q7, q0\n"
        "    vmin.s32 q7, q7, q1\n"
        "    vmovnt.i32 q4, q5\n"           /* even channels in the low, odd in the high halfwords */
        "    vmovnt.i32 q6, q7\n"
        "    cmp r5, #16\n"
        "    blt 5f\n"
        "    vstrb.16 q4, [r3], #8\n"
        "    vstrb.16 q6, [r3], #8\n"
        "    add r2, r2, r11\n"
        "    adds r7, r7, #16\n"
        "    subs r5, r5, #16\n"
        "    bgt 1b\n"
        "    b 6f\n"
        "5:  vmsr p0, r9\n"                 /* the last channels */
        "    vpst\n"
        "    vstrbt.16 q4, [r3]\n"
        "    vmsr p0, r10\n"
        "    vpst\n"
        "    vstrbt.16 q6, [r3, #8]\n"
        "6:  add sp, sp, #8\n"
        "    vpop {d8-d15}\n"
        "    pop {r4-r11, pc}\n"
        "    .size ec_mve_dw_pixel, .-ec_mve_dw_pixel\n"
        "    .text\n");

/*
 * The 3x3 fast path (ec_depthwise_conv2d_s8_mve3x3): one output pixel, every channel, for a layer
 * whose channels are whole groups of 16, without left shifts or a fused residual add, and whose
 * filter has no -128 (TFLite's int8 weights are symmetric, -127..127).  The nine taps' addresses
 * stay in r0-r8 for the whole pixel and step 16 bytes a group as they load.  Products are int8 x
 * int8 -> int16 (VMULLB.S8 / VMULLT.S8: 16 in two instructions); two taps' products are added in
 * int16 (|w| <= 127, |x| <= 128: each product within +-16,256, two within +-32,512, so no
 * wrap-around) and then widened into the four int32 accumulators: 19 instructions per two taps
 * and 16 channels.  The accumulators hold channels (0 4 8 12) (2 6 10 14) (1 5 9 13) (3 7 11 15)
 * (the header's lane order, EC_MVE_DW3X3 layout).  Requantization narrows first: VQRDMULH and the
 * rounding shift on the four int32 vectors, then a saturating narrowing to one int16 vector of
 * the even and one of the odd channels, where the zero point (saturating) and the clamp take one
 * instruction per 8 outputs -- the same integers, since a value saturated to int16 lies outside
 * [act_min, act_max] after the zero point as it did before -- then both narrowed into one int8
 * vector in channel order.
 */
typedef struct {
    const int8_t *const *t; /* 0: the nine taps' addresses (channel 0) of the first pixel */
    const int8_t *packed;   /* 4 */
    int8_t *d;              /* 8: the first pixel's output; the next pixels' follow */
    int32_t groups;         /* 12: channels / 16 */
    int32_t lo, hi, zp;     /* 16, 20, 24 */
    int32_t pixels;         /* 28: pixels along the row (> 1: every tap inside the input) */
    int32_t step;           /* 32: from one pixel's taps to the next one's, less the channels */
} ec_mve_dw9_job_t;

void ec_mve_dw3x3_run(const ec_mve_dw9_job_t *job);

/* widen the int16 products of even (q2) and odd (q3) channels into the accumulators */
#define EC_MVE_DW9_WIDEN                                                                                 \
    "    vmovlb.s16 q0, q2\n"                                                                            \
    "    vadd.i32 q4, q4, q0\n"                                                                          \
    "    vmovlt.s16 q0, q2\n"                                                                            \
    "    vadd.i32 q5, q5, q0\n"                                                                          \
    "    vmovlb.s16 q0, q3\n"                                                                            \
    "    vadd.i32 q6, q6, q0\n"                                                                          \
    "    vmovlt.s16 q0, q3\n"                                                                            \
    "    vadd.i32 q7, q7, q0\n"

/* taps a and b: products in int16, added, widened (r9: the weights, 16 a tap) */
#define EC_MVE_DW9_PAIR(a, b)                                                                            \
    "    vldrb.u8 q0, [" a "], #16\n"                                                                    \
    "    vldrb.u8 q1, [r9], #16\n"                                                                       \
    "    vmullb.s8 q2, q0, q1\n"                                                                         \
    "    vmullt.s8 q3, q0, q1\n"                                                                         \
    "    vldrb.u8 q0, [" b "], #16\n"                                                                    \
    "    vldrb.u8 q1, [r9], #16\n"                                                                       \
    "    vmullt.s8 q1, q0, q1\n"                                                                         \
    "    vadd.i16 q3, q3, q1\n"                                                                          \
    "    vldrb.u8 q1, [r9, #-16]\n"                                                                      \
    "    vmullb.s8 q0, q0, q1\n"                                                                         \
    "    vadd.i16 q2, q2, q0\n" EC_MVE_DW9_WIDEN

#define EC_MVE_DW9_SINGLE(a)                                                                             \
    "    vldrb.u8 q0, [" a "], #16\n"                                                                    \
    "    vldrb.u8 q1, [r9], #16\n"                                                                       \
    "    vmullb.s8 q2, q0, q1\n"                                                                         \
    "    vmullt.s8 q3, q0, q1\n" EC_MVE_DW9_WIDEN

/* q *= multiplier (VQRDMULH), then RoundingDivideByPOT: the header's words at [r9 + m], [r9 + s] */
#define EC_MVE_DW9_SCALE(q, m, s)                                                                        \
    "    vldrw.u32 q2, [r9, #" m "]\n"                                                                   \
    "    vqrdmulh.s32 " q ", " q ", q2\n"                                                                \
    "    vldrw.u32 q2, [r9, #" s "]\n"                                                                   \
    "    vand q3, " q ", q2\n"                                                                           \
    "    vshr.s32 q3, q3, #31\n"                                                                         \
    "    vqadd.s32 " q ", " q ", q3\n"                                                                   \
    "    vrshl.s32 " q ", " q ", q2\n"

__asm__("    .section .text.ec_mve_dw3x3_run,\"ax\",%progbits\n"
        "    .global ec_mve_dw3x3_run\n"
        "    .type ec_mve_dw3x3_run, %function\n"
        "    .syntax unified\n"
        "    .thumb\n"
        "    .thumb_func\n"
        "    .p2align 2\n"
        "ec_mve_dw3x3_run:\n"
        "    push {r4-r11, lr}\n"
        "    vpush {d8-d15}\n"
        "    sub sp, sp, #32\n"             /* lo, hi, zp, groups, packed, pixels, step */
        "    ldrd r12, lr, [r0, #16]\n"
        "    strd r12, lr, [sp]\n"
        "    ldrd r12, lr, [r0, #24]\n"
        "    str r12, [sp, #8]\n"
        "    str lr, [sp, #20]\n"
        "    ldr r12, [r0, #12]\n"
        "    str r12, [sp, #12]\n"
        "    ldr r12, [r0, #4]\n"
        "    str r12, [sp, #16]\n"
        "    ldr r12, [r0, #32]\n"
        "    str r12, [sp, #24]\n"
        "    ldr r10, [r0, #8]\n"           /* r10 output */
        "    ldr r12, [r0, #0]\n"
        "    ldm r12, {r0-r8}\n"            /* the nine taps */
        "2:  ldr r9, [sp, #16]\n"           /* a pixel: r9 the packed groups, r11 their count */
        "    ldr r11, [sp, #12]\n"
        "1:  vldrw.u32 q4, [r9]\n"          /* accumulators = bias */
        "    vldrw.u32 q5, [r9, #16]\n"
        "    vldrw.u32 q6, [r9, #32]\n"
        "    vldrw.u32 q7, [r9, #48]\n"
        "    add r9, r9, #256\n"
        EC_MVE_DW9_PAIR("r0", "r1") EC_MVE_DW9_PAIR("r2", "r3") EC_MVE_DW9_PAIR("r4", "r5")
        EC_MVE_DW9_PAIR("r6", "r7") EC_MVE_DW9_SINGLE("r8")
        "    ldrd r12, lr, [sp]\n"
        "    vdup.16 q0, r12\n"
        "    vdup.16 q1, lr\n"
        /* r9 is 400 bytes past the group's header (the next group's): multipliers at -336, right
           shifts at -208 */
        EC_MVE_DW9_SCALE("q4", "-336", "-208")
        EC_MVE_DW9_SCALE("q5", "-320", "-192")
        EC_MVE_DW9_SCALE("q6", "-304", "-176")
        EC_MVE_DW9_SCALE("q7", "-288", "-160")
        "    vqmovnb.s32 q4, q4\n"          /* even channels as int16, saturated */
        "    vqmovnt.s32 q4, q5\n"
        "    vqmovnb.s32 q6, q6\n"          /* odd channels */
        "    vqmovnt.s32 q6, q7\n"
        "    ldr r12, [sp, #8]\n"
        "    vqadd.s16 q4, q4, r12\n"
        "    vqadd.s16 q6, q6, r12\n"
        "    vmax.s16 q4, q4, q0\n"
        "    vmin.s16 q4, q4, q1\n"
        "    vmax.s16 q6, q6, q0\n"
        "    vmin.s16 q6, q6, q1\n"
        "    vmovnb.i16 q4, q4\n"           /* even channels in the even bytes, odd in the odd */
        "    vmovnt.i16 q4, q6\n"
        "    vstrb.8 q4, [r10], #16\n"
        "    subs r11, r11, #1\n"
        "    bgt 1b\n"
        "    ldr r12, [sp, #24]\n"          /* the next pixel's taps */
        "    add r0, r0, r12\n"
        "    add r1, r1, r12\n"
        "    add r2, r2, r12\n"
        "    add r3, r3, r12\n"
        "    add r4, r4, r12\n"
        "    add r5, r5, r12\n"
        "    add r6, r6, r12\n"
        "    add r7, r7, r12\n"
        "    add r8, r8, r12\n"
        "    ldr r11, [sp, #20]\n"
        "    subs r11, r11, #1\n"
        "    str r11, [sp, #20]\n"
        "    bgt 2b\n"
        "    add sp, sp, #32\n"
        "    vpop {d8-d15}\n"
        "    pop {r4-r11, pc}\n"
        "    .size ec_mve_dw3x3_run, .-ec_mve_dw3x3_run\n"
        "    .text\n");

/* The taps of output pixel ox of a row whose kernel rows start at `rows` (the fill row for a row in
 * the padding), `fill` for a column in the padding. */
EC_MVE_INLINE void dw3x3_taps(const ec_conv_params_t *p, const int8_t *const *rows, int32_t ox, const int8_t *fill,
                              const int8_t **t)
{
    const int8_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
    int32_t ix = ox * p->stride_w - p->pad_left;
    for (int32_t kx = 0; kx < 3; kx++, ix += p->dilation_w) {
        if ((uint32_t)ix < (uint32_t)p->in_w) {
            const int32_t o = ix * p->in_c;
            t[kx] = r0 + o;
            t[3 + kx] = r1 + o;
            t[6 + kx] = r2 + o;
        } else {
            t[kx] = t[3 + kx] = t[6 + kx] = fill;
        }
    }
}

/* Per output row: the pixels whose taps are all inside the input's columns in one run of the
 * assembly (their taps move a stride a pixel), each of the others alone.  `work` (in_w * in_c
 * bytes, EC_MVE_DW3X3_WORK_BYTES) is a row of the input zero point: what a tap in the padding
 * reads, a whole row of it so that the top and bottom rows run like the others. */
void EC_MVE_HOT ec_depthwise_conv2d_s8_mve3x3(const ec_conv_params_t *p, const int8_t *input, const int8_t *packed,
                                              int8_t *output, int8_t *row, int8_t *work)
{
    const int32_t c = p->in_c, row_len = p->out_w * c;
    const int8_t *t[9];
    ec_mve_dw9_job_t job = {t, packed, NULL, c / EC_MVE_DW_GROUP, p->act_min, p->act_max, p->output_offset, 1,
                            p->stride_w * c - c};
    /* the pixels [x0, x1) have every column inside */
    int32_t x0 = (p->pad_left + p->stride_w - 1) / p->stride_w, x1 = p->out_w;
    while (x1 > x0 && (x1 - 1) * p->stride_w - p->pad_left + 2 * p->dilation_w >= p->in_w)
        x1--;
    if (x0 > x1)
        x0 = x1;
#if defined(EC_DEBUG) /* the generator decides (predicates.mve_dw3x3_ok); debug builds check it */
    if (p->kernel_h != 3 || p->kernel_w != 3 || c % EC_MVE_DW_GROUP != 0 || p->residual != NULL)
        __builtin_trap();
    for (int32_t i = 0; i < c; i++)
        if (p->shift[i] > 0)
            __builtin_trap();
    for (int32_t g = 0; g < c / EC_MVE_DW_GROUP; g++)
        for (int32_t i = 0; i < 9 * EC_MVE_DW_GROUP; i++)
            if (packed[g * EC_MVE_DW_GROUP_BYTES(9) + 256 + i] == -128)
                __builtin_trap();
#endif
    fill_bytes(work, (int8_t)(-p->input_offset), p->in_w * c); /* what a tap in the padding reads */
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int8_t *rows[3]; /* the kernel rows' input rows (the fill row in the padding) */
            for (int32_t ky = 0; ky < 3; ky++) {
                const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dilation_h;
                rows[ky] = iy >= 0 && iy < p->in_h ? in_b + iy * p->in_w * c : work;
            }
            for (int32_t ox = 0; ox < p->out_w;) {
                dw3x3_taps(p, rows, ox, work, t);
                job.d = dst + ox * c;
                job.pixels = ox == x0 && x1 > x0 ? x1 - x0 : 1;
                ec_mve_dw3x3_run(&job);
                ox += job.pixels;
            }
            if (row != NULL)
                copy_bytes(output + out_row, row, row_len);
        }
    }
}

/* The address each tap of output pixel (oy, ox) reads: its input pixel, or `fill` in the padding. */
static void dw_taps(const ec_conv_params_t *p, const int8_t *in, int32_t oy, int32_t ox, const int8_t *fill,
                    const int8_t **t)
{
    const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    for (int32_t ky = 0; ky < p->kernel_h; ky++) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        for (int32_t kx = 0; kx < p->kernel_w; kx++) {
            const int32_t ix = ix0 + kx * p->dilation_w;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            *t++ = inside ? in + (iy * p->in_w + ix) * p->in_c : fill;
        }
    }
}

void ec_depthwise_conv2d_s8_mve(const ec_conv_params_t *p, const int8_t *input, const int8_t *packed,
                                int8_t *output, int8_t *row, const int8_t *skip, int8_t *work)
{
    const int32_t c = p->in_c, kh = p->kernel_h, kw = p->kernel_w, taps = kh * kw;
    const int32_t row_len = p->out_w * c, step = p->stride_w * c;
    const int8_t *t[EC_MVE_DW_MAX_TAPS];
    int left = 0;
    for (int32_t i = 0; i < c; i++)
        left |= p->shift[i] > 0;
    fill_bytes(work, (int8_t)(-p->input_offset), c); /* what a tap in the padding reads */
    const int general = left || p->residual != NULL; /* else the assembly pixel */
    ec_mve_dw_job_t job = {t, packed, NULL, taps, c, p->output_offset, p->act_min, p->act_max, 0};
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            const int8_t *sk = skip != NULL ? skip + out_row : NULL;
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            const int rows_inside = iy0 >= 0 && iy0 + (kh - 1) * p->dilation_h < p->in_h;
            int32_t run = -1; /* t[] holds the taps of pixel `run`, all inside the input (-1: none) */
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                if (rows_inside && ix0 >= 0 && ix0 + (kw - 1) * p->dilation_w < p->in_w) {
                    if (run < 0 || general) { /* (the C path moves the taps, the assembly an offset) */
                        dw_taps(p, in_b, oy, ox, work, t);
                        run = ox;
                    }
                } else {
                    dw_taps(p, in_b, oy, ox, work, t);
                    run = -1;
                }
                if (general) {
                    dw_pixel(p, t, packed, dst + ox * c, sk != NULL ? sk + ox * c : NULL, left);
                } else {
                    job.d = dst + ox * c;
                    job.offset = run < 0 ? 0 : (ox - run) * step; /* the next pixels along the row: a stride each */
                    ec_mve_dw_pixel(&job);
                }
            }
            if (row != NULL)
                copy_bytes(output + out_row, row, row_len);
        }
    }
}

/* ---- pooling ------------------------------------------------------------------------------------ */

typedef struct {
    int32_t y0, y1, x0, x1;
} ec_mve_window_t;

EC_MVE_INLINE ec_mve_window_t pool_window(const ec_pool_params_t *p, int32_t oy, int32_t ox)
{
    ec_mve_window_t w;
    const int32_t iy = oy * p->stride_h - p->pad_top, ix = ox * p->stride_w - p->pad_left;
    w.y0 = iy < 0 ? 0 : iy;
    w.y1 = iy + p->kernel_h < p->in_h ? iy + p->kernel_h : p->in_h;
    w.x0 = ix < 0 ? 0 : ix;
    w.x1 = ix + p->kernel_w < p->in_w ? ix + p->kernel_w : p->in_w;
    return w;
}

void EC_MVE_HOT ec_max_pool2d_s8_mve(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const int32_t ch = p->channels, row_len = p->out_w * ch;
    const int8x16_t lo = vdupq_n_s8((int8_t)p->act_min), hi = vdupq_n_s8((int8_t)p->act_max);
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * ch;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const ec_mve_window_t w = pool_window(p, oy, ox);
                for (int32_t c = 0; c < ch; c += 16) {
                    const mve_pred16_t keep = vctp8q((uint32_t)(ch - c));
                    int8x16_t m = vdupq_n_s8(-128);
                    for (int32_t y = w.y0; y < w.y1; y++) {
                        const int8_t *src = in_b + (y * p->in_w + w.x0) * ch + c;
                        for (int32_t x = w.x0; x < w.x1; x++, src += ch)
                            m = vmaxq_s8(m, vldrbq_z_s8(src, keep));
                    }
                    vstrbq_p_s8(dst + ox * ch + c, vminq_s8(vmaxq_s8(m, lo), hi), keep);
                }
            }
            if (row != NULL)
                copy_bytes(output + out_row, row, row_len);
        }
    }
}

/* round(sum / count) half away from zero, as TFLM: |sum| + count / 2 divided by multiplying with
 * ceil(2^32 / count) and keeping the high word (exact: |sum| + count / 2 < 2^16, count <= 256) */
EC_MVE_INLINE int32x4_t average(int32x4_t sum, int32_t count, uint32_t recip)
{
    if (count <= 1)
        return sum;
    const int32x4_t sign = vshrq_n_s32(sum, 31);
    const uint32x4_t n = vreinterpretq_u32_s32(vaddq_n_s32(vabsq_s32(sum), count / 2));
    const int32x4_t q = vreinterpretq_s32_u32(vmulhq_u32(n, vdupq_n_u32(recip)));
    return vsubq_s32(veorq_s32(q, sign), sign);
}

void EC_MVE_HOT ec_avg_pool2d_s8_mve(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row)
{
    const int32_t ch = p->channels, row_len = p->out_w * ch;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + b * p->in_h * p->in_w * ch;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t out_row = (b * p->out_h + oy) * row_len;
            int8_t *dst = row != NULL ? row : output + out_row;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const ec_mve_window_t w = pool_window(p, oy, ox);
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
                const uint32_t recip = count > 1 ? (uint32_t)((0xFFFFFFFFu / (uint32_t)count) + 1u) : 0u;
                for (int32_t c = 0; c < ch; c += 8) {
                    const mve_pred16_t keep = vctp16q((uint32_t)(ch - c));
                    int16x8_t s = vdupq_n_s16(0);
                    for (int32_t y = w.y0; y < w.y1; y++) {
                        const int8_t *src = in_b + (y * p->in_w + w.x0) * ch + c;
                        for (int32_t x = w.x0; x < w.x1; x++, src += ch)
                            s = vaddq_s16(s, vldrbq_z_s16(src, keep));
                    }
                    int32x4_t e = average(vmovlbq_s16(s), count, recip);
                    int32x4_t o = average(vmovltq_s16(s), count, recip);
                    e = vminq_s32(vmaxq_s32(e, lo), hi);
                    o = vminq_s32(vmaxq_s32(o, lo), hi);
                    vstrbq_p_s16(dst + ox * ch + c, interleave(e, o), keep);
                }
            }
            if (row != NULL)
                copy_bytes(output + out_row, row, row_len);
        }
    }
}

/* ---- elementwise ---------------------------------------------------------------------------------- */

void EC_MVE_HOT ec_add_s8_mve(const ec_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *output,
                              int32_t size)
{
    const ec_mve_add_t c = add_consts(p);
    int32_t i = 0;
    for (; i + 4 <= size; i += 4)
        vstrbq_s32(output + i, add_lanes(p, &c, vldrbq_s32(a + i), vldrbq_s32(b + i)));
    if (i < size) {
        const mve_pred16_t keep = vctp32q((uint32_t)(size - i));
        vstrbq_p_s32(output + i, add_lanes(p, &c, vldrbq_z_s32(a + i, keep), vldrbq_z_s32(b + i, keep)), keep);
    }
}

#else
/* Not an MVE target: the Helium kernels are not built (an empty translation unit needs a declaration). */
typedef int ec_kernels_mve_unused;
#endif /* __ARM_FEATURE_MVE */
