/*
 * ec_kernels_pool_ext.h - the pools beyond TFLite's (ONNX): a dilated max pool, and an average
 * that counts the padding (count_include_pad), int8 and float32.  Same row-at-a-time output
 * contract as ec_max_pool2d_s8 / ec_avg_pool2d_s8 (ec_kernels.h): with `row` each output row goes
 * through that scratch row, so the output may overlap the input as the memory planner allows.
 */
#ifndef EC_KERNELS_POOL_EXT_H
#define EC_KERNELS_POOL_EXT_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    ec_pool_params_t pool;            /* the window geometry and clamp, as the plain kernels take it */
    int32_t dilation_h, dilation_w;   /* taps dilation apart (max pool) */
    int32_t count_include_pad;        /* average: divide by the taps inside the padded input ... */
    int32_t pad_bottom, pad_right;    /* ... [-pad_top, in_h + pad_bottom) x [-pad_left, in_w + pad_right) */
    int32_t zero_point;               /* int8: the value of a padded tap (a real zero) */
} ec_pool_ext_params_t;

/* The maximum over the window's in-bounds taps (-128 / -INFINITY if none), clamped. */
void ec_max_pool2d_ext_s8(const ec_pool_ext_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
void ec_max_pool2d_ext_f32(const ec_pool_ext_params_t *p, const float *input, float *output, float *row);
/* The average over the window, padded taps counted as zeros (int8: the sum plus zero_point per padded
 * tap, divided by the count rounding half away from zero, as TFLM's average pool rounds). */
void ec_avg_pool2d_ext_s8(const ec_pool_ext_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
void ec_avg_pool2d_ext_f32(const ec_pool_ext_params_t *p, const float *input, float *output, float *row);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_POOL_EXT_H */
