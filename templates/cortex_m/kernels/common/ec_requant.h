/*
 * ec_requant.h - the requantization and saturation primitives of every kernel file, static inline,
 * and the attributes that steer inlining.  Not part of the model API (model.c does not include it).
 *
 * TFLite's integer arithmetic (gemmlowp names):
 *   SaturatingRoundingDoublingHighMul(a, b) = round(a * b / 2^31), ties up, saturated
 *       (ec_srdhm; the public ec_sat_rounding_doubling_high_mul is TFLite's literal code)
 *   RoundingDivideByPOT(x, e)               = round(x / 2^e), ties away from zero   (ec_rdbpot)
 *   MultiplyByQuantizedMultiplier(x, M, s)  = x * M * 2^(s - 31), shift s > 0 left   (ec_mbqm)
 * with M a Q31 multiplier in [2^30, 2^31) (or 0, passes/requantize.py).
 *
 * The composites below take `small`: EC_SMALL calls the out-of-line public functions (the reference
 * kernels: TFLite's literal arithmetic, the least flash), EC_FAST inlines the one-shift forms (the
 * optimized kernels).  Both give the same integers.
 */
#ifndef EC_REQUANT_H
#define EC_REQUANT_H

#include <stdint.h>

#include "ec_kernels.h"

/* ---- attributes ------------------------------------------------------------------ */

#if defined(__GNUC__)
/* always inlined: the primitives, small helpers of hot loops */
#define EC_INLINE static inline __attribute__((always_inline))
/* never inlined: keeps an inner loop's pointers out of a deep loop nest's registers, or a
 * function's frame off its caller's (the stack one inference needs) */
#define EC_NOINLINE __attribute__((noinline))
/* a hot loop: a function of its own, optimized for speed in an -Os build */
#define EC_HOT __attribute__((noinline, optimize("O2")))
/* EC_HOT whose byte loops must stay loops (not be turned into memset / memcpy calls) */
#define EC_HOT_LOOPS __attribute__((noinline, optimize("O2", "no-tree-loop-distribute-patterns")))
/* no warning where a file does not call it */
#define EC_UNUSED __attribute__((unused))
#else
#define EC_INLINE static inline
#define EC_NOINLINE
#define EC_HOT
#define EC_HOT_LOOPS
#define EC_UNUSED
#endif

#define EC_SMALL 1
#define EC_FAST 0

/* ---- saturation ------------------------------------------------------------------- */

EC_INLINE int32_t ec_clip_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

EC_INLINE float ec_clip_f32(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* x saturated to int8 (one SSAT on cores with the DSP extension) */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define EC_SSAT8(x) __ssat((x), 8)
#else
#define EC_SSAT8(x) ec_clip_i32((x), -128, 127)
#endif

/* ---- requantization ---------------------------------------------------------------- */

/* x << shift as two's complement, without signed-overflow undefined behaviour */
EC_INLINE int32_t ec_shift_left(int32_t x, int shift)
{
    return (int32_t)((uint32_t)x << shift);
}

/*
 * SaturatingRoundingDoublingHighMul for b != INT32_MIN (b is a multiplier, or one of the softmax's
 * constants): TFLite divides ab + nudge by 2^31 truncating toward zero.
 * ab >= 0: nudge = 2^30, truncation = floor, so floor((ab + 2^30) / 2^31).
 * ab < 0: nudge = 1 - 2^30 and ab + nudge < 0, truncation = floor((ab + nudge + 2^31 - 1) / 2^31)
 * = floor((ab + 2^30) / 2^31) again: one arithmetic shift for both signs.  The saturation case
 * a == b == INT32_MIN cannot occur.
 */
EC_INLINE int32_t ec_srdhm(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + (1 << 30)) >> 31);
}

/* RoundingDivideByPOT: (x >> e) + 1 when the remainder is above half (ties away from zero), 0 <= e <= 31 */
EC_INLINE int32_t ec_rdbpot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + ((x & mask) > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier (TFLite's default two-rounding variant), inlined */
EC_INLINE int32_t ec_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    if (shift > 0)
        return ec_srdhm(ec_shift_left(x, shift), multiplier);
    return ec_rdbpot(ec_srdhm(x, multiplier), -shift);
}

/* ---- composites ---------------------------------------------------------------------- */

/* MultiplyByQuantizedMultiplier, `small` (EC_SMALL: out of line) or inlined (EC_FAST) */
EC_INLINE int32_t ec_requant(int32_t x, int32_t multiplier, int32_t shift, int small)
{
    return small ? ec_multiply_by_quantized_multiplier(x, multiplier, shift) : ec_mbqm(x, multiplier, shift);
}

/* RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), -s) for s <= 0: out of line (TFLite's
 * literal code, the reference kernels) or inlined (the optimized kernels) */
#define EC_RESCALE_SMALL(x, m, s) ec_rounding_divide_by_pot(ec_sat_rounding_doubling_high_mul((x), (m)), -(s))
#define EC_RESCALE_FAST(x, m, s) ec_rdbpot(ec_srdhm((x), (m)), -(s))

/* The body of a function (p, a, b) -> one int8 ADD element, TFLM's AddFunc (a, b raw int8 values),
 * with the rescale RESCALE (EC_RESCALE_SMALL or EC_RESCALE_FAST) */
#define EC_ADD_ELEMENT_S8(p, a, b, RESCALE)                                                         \
    const int32_t x1 = ec_shift_left((p)->input1_offset + (a), (p)->left_shift);                   \
    const int32_t x2 = ec_shift_left((p)->input2_offset + (b), (p)->left_shift);                   \
    const int32_t s1 = RESCALE(x1, (p)->input1_multiplier, (p)->input1_shift);                     \
    const int32_t s2 = RESCALE(x2, (p)->input2_multiplier, (p)->input2_shift);                     \
    const int32_t out = RESCALE(s1 + s2, (p)->output_multiplier, (p)->output_shift) + (p)->output_offset; \
    return (int8_t)ec_clip_i32(out, (p)->act_min, (p)->act_max)

/* One int8 ADD element with the requantization inlined: the optimized kernels' fused residual add
 * (ec_add_one_s8 is the reference's), out of line in each file that calls it */
static EC_NOINLINE EC_UNUSED int8_t ec_add_one_s8_fast(const ec_add_params_t *p, int32_t a, int32_t b)
{
    EC_ADD_ELEMENT_S8(p, a, b, EC_RESCALE_FAST);
}

/* The int8 conv epilogue: requantize one accumulator of output channel oc, clamp, then the fused
 * residual add of the skip value (`skip` NULL: none) */
EC_INLINE int8_t ec_conv_out_elem_s8(const ec_conv_params_t *p, int32_t acc, int32_t oc, const int8_t *skip,
                                     int small)
{
    acc = ec_requant(acc, p->multiplier[oc], p->shift[oc], small) + p->output_offset;
    acc = ec_clip_i32(acc, p->act_min, p->act_max);
    if (skip != NULL)
        return small ? ec_add_one_s8(p->residual, acc, *skip) : ec_add_one_s8_fast(p->residual, acc, *skip);
    return (int8_t)acc;
}

/* The optimized kernels' conv epilogue (inlined; the fused residual add out of line) */
EC_INLINE int8_t ec_conv_out_fast(const ec_conv_params_t *p, int32_t acc, int32_t oc, const int8_t *skip)
{
    return ec_conv_out_elem_s8(p, acc, oc, skip, EC_FAST);
}

#endif /* EC_REQUANT_H */
