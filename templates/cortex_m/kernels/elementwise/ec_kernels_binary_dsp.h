/*
 * ec_kernels_binary_dsp.h - the squeeze-excite multiply for cores with the DSP extension:
 * out[n][p][c] = x[n][p][c] * s[n][c] (int8, TFLM's MUL numerics), a per-pixel scale of every
 * channel, as [N, H, W, C] * [N, 1, 1, C].  Bit-exact with ec_binary_s8 (EC_BINARY_MUL).
 */
#ifndef EC_KERNELS_BINARY_DSP_H
#define EC_KERNELS_BINARY_DSP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t batches, pixels, channels;
    int32_t x_offset, s_offset, output_offset; /* TFLite's input offsets (-zero point) and output zero point */
    int32_t multiplier;  /* Q31 */
    int32_t right_shift; /* 1..23: TFLite's shift is -right_shift (no left shift) */
} ec_mul_cs_params_t;

/* The output may be x itself (each element is written after it is read, at its own place); the full
 * int8 range is the clamp range. */
void ec_mul_s8_channel_scale(const ec_mul_cs_params_t *p, const int8_t *x, const int8_t *s, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_BINARY_DSP_H */
