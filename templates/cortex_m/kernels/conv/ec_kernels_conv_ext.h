/*
 * ec_kernels_conv_ext.h - convolutions beyond TFLite's plain ones, int8 (bit-exact with TensorFlow
 * Lite Micro's reference kernels) and float32: grouped convolution and transpose convolution.
 * Same parameter block as the reference convolution (ec_conv_params_t, ec_kernels.h).
 */
#ifndef EC_KERNELS_CONV_EXT_H
#define EC_KERNELS_CONV_EXT_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Grouped convolution (1 < groups < in_c): filter [out_c][kh][kw][in_c / groups]; output channel
 * oc reads the input channels of its group g = oc / (out_c / groups).  Row at a time through `row`
 * as ec_conv2d_s8; `skip`: a fused residual add (p->residual), or NULL. */
void ec_conv2d_grouped_s8(const ec_conv_params_t *p, int32_t groups, const int8_t *input, const int8_t *filter,
                          const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip);
void ec_conv2d_grouped_f32(const ec_conv_params_t *p, int32_t groups, const float *input, const float *filter,
                           const float *bias, float *output, float *row, const float *skip);

/* Transpose convolution: filter [out_c][kh][kw][in_c]; output pixel (oy, ox) sums input pixel
 * (iy, ix) through tap (ky, kx) where iy * stride_h + ky * dilation_h = oy + pad_top (and likewise
 * for x): the gather form of TFLM's scatter, the same int32 sums.  Output apart from the input. */
void ec_transpose_conv2d_s8(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output);
void ec_transpose_conv2d_f32(const ec_conv_params_t *p, const float *input, const float *filter,
                             const float *bias, float *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_CONV_EXT_H */
