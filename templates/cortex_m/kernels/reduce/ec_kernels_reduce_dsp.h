/*
 * ec_kernels_reduce_dsp.h - reductions for cores with the DSP extension (Cortex-M4/M7): the int8
 * mean over the pixels of an NHWC tensor (a global average pool, Keras' GlobalAveragePooling2D,
 * ONNX ReduceMean over H and W), 4 channels at a time with SXTAB16.  Same results as
 * ec_mean_s8 (TFLM) bit for bit; plain C versions of the instructions elsewhere (host builds).
 */
#ifndef EC_KERNELS_REDUCE_DSP_H
#define EC_KERNELS_REDUCE_DSP_H

#include "ec_kernels_reduce.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The reduction the generator found to be "pixels x channels" (backends/c/emit/reduce.py:
 * spatial_mean): kept runs (batches, channels) with strides (pixels * channels, 1), one reduced
 * run of `pixels` with stride `channels`. */
void ec_mean_s8_dsp(const ec_reduce_params_t *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_REDUCE_DSP_H */
