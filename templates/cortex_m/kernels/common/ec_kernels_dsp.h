/*
 * ec_kernels_dsp.h - int8 kernels for cores with the DSP extension (Cortex-M4/M7): conv/ec_conv2d_dsp.c,
 * depthwise/ec_depthwise_conv2d_dsp.c, fully_connected/ec_fully_connected_dsp.c, pooling/ec_pooling_dsp.c.
 *
 * Same parameter blocks, layouts and row-at-a-time output contract as the
 * reference kernels (ec_kernels.h), same results bit for bit.  Two
 * differences in what the generator passes:
 *
 *  - `bias` (conv, fully connected) is the folded bias: bias[oc] + input_offset * sum(filter[oc]),
 *    computed by the generator, so the inner loops multiply raw int8 inputs
 *    with raw int8 weights (two MACs per SMLAD).  Taps in the padding, which
 *    TFLM skips, are taken back out on the (slow, exact) border path.
 *  - filter_offset must be 0 (TFLite int8 weights are symmetric); the
 *    generator uses the reference kernel otherwise.
 *
 * With __ARM_FEATURE_DSP the ACLE intrinsics (arm_acle.h) are used; other
 * compilers (the host) get plain C versions of exactly those intrinsics, so
 * the same algorithm runs everywhere.
 */
#ifndef EC_KERNELS_DSP_H
#define EC_KERNELS_DSP_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void ec_conv2d_s8_dsp(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip);
/* Depthwise: bias NOT folded (the input offset is added in the kernel); depth multiplier 1 only
 * (the generator sends other multipliers to the reference kernel, so it is not linked here).
 * 3x3 stride-1 layers with padding <= 1 and right-shift requantization take a faster path (4 rows x 2 channels at a time) that writes the
 * output directly, also in place when output row r lies exactly on input row r - pad_top, and
 * uses `row` as its scratch when it is large enough (else 304 bytes of stack). */
void ec_depthwise_conv2d_s8_dsp(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip);
/* Only the fast path, for layers the generator found eligible (c_codegen.dw_fast_ok): models
 * whose depthwise layers all take it do not link the general code. */
void ec_depthwise_conv2d_s8_dsp3x3(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                   const int32_t *bias, int8_t *output, int8_t *row);
/* The same layers in strips of up to 28 rows (int16 row pairs built once, blocks of 4 rows x 1
 * column requantized in registers), with --optimize speed: `work` is its workspace in the arena,
 * 840 bytes, word-aligned (predicates.DW_SCRATCH_BYTES); without one, the fast path above. */
void ec_depthwise_conv2d_s8_dsp3x3w(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                    const int32_t *bias, int8_t *output, int8_t *work);
/* Only the 3x3 stride-2 path (c_codegen.dw_s2_ok), likewise. */
void ec_depthwise_conv2d_s8_dsp3x3s2(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                     const int32_t *bias, int8_t *output, int8_t *row);
/* Average pooling over the whole input (output 1x1, no padding, at most 256 pixels: the generator
 * checks), 4 channels at a time with SXTAB16; same results as ec_avg_pool2d_s8 (TFLM). */
void ec_global_avg_pool2d_s8_dsp(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
/* Fully connected: the filter re-packed by the generator (c_codegen.pack_fc_weights: output rows
 * in quads, inputs in groups of 4), the bias folded and padded to a multiple of 4; ..._dsp16 with
 * the weights stored widened to int16 (--optimize speed). */
void ec_fully_connected_s8_dsp(const ec_fc_params_t *p, const int8_t *input, const int8_t *filter,
                               const int32_t *bias, int8_t *output, int8_t *row);
void ec_fully_connected_s8_dsp16(const ec_fc_params_t *p, const int8_t *input, const int8_t *filter,
                                 const int32_t *bias, int8_t *output, int8_t *row);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_DSP_H */
