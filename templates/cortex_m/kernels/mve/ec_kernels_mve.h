/*
 * ec_kernels_mve.h - int8 kernels for cores with Helium (MVE, Armv8.1-M: Cortex-M55, Cortex-M85).
 *
 * Each kernel computes exactly what its reference kernel in ec_kernels.c computes (TFLite int8
 * numerics, bit for bit), with the same parameter blocks, NHWC activations and the same row
 * contract: with `row` != NULL an output row is computed into that scratch row (out_w * out_c
 * bytes) and then copied, so the output may overlap the input as the memory planner allows for
 * the reference kernel; with `row` == NULL the output must not overlap the input.
 *
 * The multiply-accumulate work is 16 int8 products per instruction (VMLADAVA, matrix products)
 * or 8 widening products (VMULLB/VMULLT, depthwise); loops run with tail predication (DLSTP/
 * LETP, VCTP), so no channel count needs to be a multiple of 16 and nothing is read past the
 * end of a tensor.
 *
 * Filters are packed at compile time (edgecomp/backends/mve_pack.py writes the layouts; docs/internals.md,
 * "Helium kernels"): the input offset is folded into the bias (bias + input_offset * sum(w),
 * int32 wrap-around) and every group of output channels starts with its requantization
 * constants.  filter_offset must be 0 (TFLite's int8 weights are symmetric).
 *
 * Only compiled for MVE targets (__ARM_FEATURE_MVE); elsewhere ec_kernels_mve.c is empty.
 */
#ifndef EC_KERNELS_MVE_H
#define EC_KERNELS_MVE_H

#include <stdint.h>

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- packed layouts ----------------------------------------------------------------------- */

/*
 * Convolution (matrix product): output channels in groups of 3, each group
 *   int32 bias[4], multiplier[4], left_shift[4] (>= 0), right_shift[4] (<= 0)   64 bytes
 *   then for each 16-tap chunk of the K = kernel_h * kernel_w * in_c window taps (in the filter's
 *   [KH][KW][I] order): 16 weights of channel 0, 16 of channel 1, 16 of channel 2
 * Lanes past the group's channels and taps past K are zero.  Groups are 16-byte aligned.
 */
#define EC_MVE_CONV_GROUP 3
#define EC_MVE_CHUNKS(k) (((k) + 15) / 16)
#define EC_MVE_CONV_GROUP_BYTES(k) (64 + 16 * EC_MVE_CONV_GROUP * EC_MVE_CHUNKS(k))
/* Workspace: two im2col windows (none for a 1x1 unpadded convolution, read in place). */
#define EC_MVE_CONV_WORK_BYTES(kh, kw, in_c, pad) (((kh) == 1 && (kw) == 1 && !(pad)) ? 0 : 2 * (kh) * (kw) * (in_c))

/*
 * Fully connected: output rows in groups of 6, each group
 *   int32 bias[8], multiplier[8], left_shift[8], right_shift[8]   128 bytes (rows 6, 7 zero)
 *   then for each 16-input chunk: 16 weights of each of the 6 rows.
 */
#define EC_MVE_FC_GROUP 6
#define EC_MVE_FC_GROUP_BYTES(n_in) (128 + 16 * EC_MVE_FC_GROUP * EC_MVE_CHUNKS(n_in))

/*
 * Depthwise convolution (depth multiplier 1): channels in groups of 16, each group
 *   int32 bias[16], multiplier[16], left_shift[16], right_shift[16]: each as the group's
 *   channels 0, 2, 4, 6 | 1, 3, 5, 7 | 8, 10, 12, 14 | 9, 11, 13, 15 (the lanes of VMULLB and
 *   VMULLT on each half)                                                          256 bytes
 *   then for each tap (ky, kx): the 16 channels' weights.
 * Workspace: in_c bytes (a row of the input zero point for the taps in the padding).
 */
#define EC_MVE_DW_GROUP 16
#define EC_MVE_DW_MAX_TAPS 25
#define EC_MVE_DW_GROUP_BYTES(taps) (256 + 16 * (taps))
#define EC_MVE_DW_WORK_BYTES(in_c) (in_c)

/*
 * The 3x3 fast path (ec_depthwise_conv2d_s8_mve3x3: channels a multiple of 16, no left shift, no
 * fused residual add, no -128 in the filter) reads the same layout with the header's lanes in the
 * order its int8 products widen into: channels 0, 4, 8, 12 | 2, 6, 10, 14 | 1, 5, 9, 13 | 3, 7, 11, 15.
 * The generator chooses it (edgecomp/backends/c/kernels/predicates.py: mve_dw3x3_ok).
 * Workspace: in_w * in_c bytes (a whole input row of the zero point, read by the padding's taps).
 */
#define EC_MVE_DW3X3_WORK_BYTES(in_w, in_c) ((in_w) * (in_c))

/* ---- kernels -------------------------------------------------------------------------------- */

/* conv2d: any kernel, stride, dilation and padding; fused residual add when p->residual (skip). */
void ec_conv2d_s8_mve(const ec_conv_params_t *p, const int8_t *input, const int8_t *packed, int8_t *output,
                      int8_t *row, const int8_t *skip, int8_t *work);
/* depthwise conv2d, depth multiplier 1, kernel_h * kernel_w <= EC_MVE_DW_MAX_TAPS. */
void ec_depthwise_conv2d_s8_mve(const ec_conv_params_t *p, const int8_t *input, const int8_t *packed,
                                int8_t *output, int8_t *row, const int8_t *skip, int8_t *work);
/* the 3x3 fast path (see the layout above): any stride, dilation and padding, batches */
void ec_depthwise_conv2d_s8_mve3x3(const ec_conv_params_t *p, const int8_t *input, const int8_t *packed,
                                   int8_t *output, int8_t *row, int8_t *work);
void ec_fully_connected_s8_mve(const ec_fc_params_t *p, const int8_t *input, const int8_t *packed, int8_t *output,
                               int8_t *row);
void ec_max_pool2d_s8_mve(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
/* kernel_h * kernel_w <= 256 (window sums in 16 bits). */
void ec_avg_pool2d_s8_mve(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
void ec_add_s8_mve(const ec_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *output, int32_t size);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_MVE_H */
