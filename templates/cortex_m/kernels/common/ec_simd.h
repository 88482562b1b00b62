/*
 * ec_simd.h - the DSP-extension instructions the optimized kernel files use (SXTB16, SXTAB16, SMLAD,
 * SMLABB/BT/TB/TT, SADD16, SMMLAR, PKHBT) and a 32-bit load from any address.  On cores with the DSP
 * extension they are single instructions (ACLE intrinsics, or inline assembly where the compiler
 * would not emit the one instruction); elsewhere (host builds, other compilers) plain C versions of
 * exactly the same operations, so the same algorithms run everywhere.
 */
#ifndef EC_SIMD_H
#define EC_SIMD_H

#include <stdint.h>
#include <string.h>

#include "ec_requant.h"

/* rotate right by 8 (ROR; not every arm_acle.h has __ror) */
static inline uint32_t ec_ror8(uint32_t x)
{
    return (x >> 8) | (x << 24);
}

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define EC_SXTB16(x) ((uint32_t)__sxtb16(x))
#if defined(__GNUC__)
/* SXTB16 with its built-in rotation: one instruction (the compiler does not always fold the ROR) */
static inline __attribute__((always_inline)) uint32_t ec_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#define EC_SXTB16_ROR8(x) ec_sxtb16_ror8(x)
#else
#define EC_SXTB16_ROR8(x) ((uint32_t)__sxtb16(ec_ror8(x)))
#endif
#else
static inline uint32_t ec_sxtb16(uint32_t x)
{
    return ((uint32_t)(int32_t)(int8_t)(x & 0xffu) & 0xffffu) |
           ((uint32_t)(int32_t)(int8_t)((x >> 16) & 0xffu) << 16);
}
#define EC_SXTB16(x) ec_sxtb16(x)
#define EC_SXTB16_ROR8(x) ec_sxtb16(ec_ror8(x))
#endif

#if defined(__ARM_FEATURE_DSP)
#define EC_SMLAD(a, b, acc) ((int32_t)__smlad((a), (b), (acc)))
#define EC_SMLABB(a, b, acc) ((int32_t)__smlabb((int32_t)(a), (int32_t)(b), (acc)))
#define EC_SMLATT(a, b, acc) ((int32_t)__smlatt((int32_t)(a), (int32_t)(b), (acc)))
#define EC_SADD16(a, b) ((uint32_t)__sadd16((a), (b)))
#else
/* Plain C versions of exactly the intrinsics above (host builds, other compilers). */
static inline int32_t ec_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t lo = (int32_t)(int16_t)(a & 0xffffu) * (int32_t)(int16_t)(b & 0xffffu);
    int32_t hi = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi); /* wraps like SMLAD */
}
static inline int32_t ec_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)(a & 0xffffu) * (int32_t)(int16_t)(b & 0xffffu)));
}
static inline int32_t ec_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16)));
}
static inline uint32_t ec_sadd16(uint32_t a, uint32_t b)
{
    return ((a + b) & 0xffffu) | (((a >> 16) + (b >> 16)) << 16);
}
#define EC_SMLAD(a, b, acc) ec_smlad((a), (b), (acc))
#define EC_SMLABB(a, b, acc) ec_smlabb((a), (b), (acc))
#define EC_SMLATT(a, b, acc) ec_smlatt((a), (b), (acc))
#define EC_SADD16(a, b) ec_sadd16((a), (b))
#endif

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
/* acc + the sign-extended bytes 0 and 2 (or 1 and 3) of x, as two 16-bit sums (SXTAB16) */
static inline __attribute__((always_inline)) uint32_t ec_sxtab16_ror8(uint32_t acc, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}
#define EC_SXTAB16(acc, x) ((uint32_t)__sxtab16((acc), (x)))
#define EC_SXTAB16_ROR8(acc, x) ec_sxtab16_ror8((acc), (x))
#define EC_SMLABT(a, b, acc) ((int32_t)__smlabt((int32_t)(a), (int32_t)(b), (acc)))
#define EC_SMLATB(a, b, acc) ((int32_t)__smlatb((int32_t)(a), (int32_t)(b), (acc)))
/* (c * 2^32 + a * b + 2^31) >> 32 */
static inline __attribute__((always_inline)) int32_t ec_smmlar(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
/* (a & 0xffff) | (b << 16) */
static inline __attribute__((always_inline)) uint32_t ec_pkhbt(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
#define EC_SXTAB16(acc, x) EC_SADD16((acc), EC_SXTB16(x))
#define EC_SXTAB16_ROR8(acc, x) EC_SADD16((acc), EC_SXTB16_ROR8(x))
EC_INLINE int32_t ec_mul16(uint32_t a, uint32_t b)
{
    return (int32_t)(int16_t)(a & 0xffffu) * (int32_t)(int16_t)(b & 0xffffu);
}
#define EC_SMLABT(a, b, acc) ((int32_t)((uint32_t)(acc) + (uint32_t)ec_mul16((a), (b) >> 16)))
#define EC_SMLATB(a, b, acc) ((int32_t)((uint32_t)(acc) + (uint32_t)ec_mul16((a) >> 16, (b))))
EC_INLINE int32_t ec_smmlar(int32_t a, int32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32));
}
#define ec_pkhbt(a, b) (((a) & 0xffffu) | ((b) << 16))
#endif

/* A 32-bit load from any address (a single LDR on Cortex-M4/M7). */
static inline uint32_t ec_load32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The head and the tail of a function written in a top-level __asm__ block: Thumb-2, unified syntax,
 * its own section (unused ones are dropped at link time). */
#define EC_ASM_FUNC(NAME) \
    "    .section .text." NAME ",\"ax\",%progbits\n" \
    "    .global " NAME "\n" \
    "    .type " NAME ", %function\n" \
    "    .syntax unified\n" \
    "    .thumb\n" \
    "    .thumb_func\n" \
    "    .p2align 2\n" \
    NAME ":\n"
#define EC_ASM_END(NAME) \
    "    .size " NAME ", .-" NAME "\n" \
    "    .text\n"

#endif /* EC_SIMD_H */
