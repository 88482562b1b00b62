/*
 * ec_simd.h - the packed-byte helpers both optimized kernel files use (ec_kernels_dsp.c,
 * ec_kernels_gemm.c): SXTB16 (bytes 0 and 2, or after a rotation by 8 bytes 1 and 3, sign-
 * extended into two 16-bit halves) and a 32-bit load from any address.  On cores with the DSP
 * extension they are single instructions; elsewhere (host builds, other compilers) plain C
 * versions of exactly the same operations.
 */
#ifndef EC_SIMD_H
#define EC_SIMD_H

#include <stdint.h>
#include <string.h>

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
