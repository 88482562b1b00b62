/*
 * ec_kernels.h - reference kernels for edgecomp-generated models.
 *
 * One plain C implementation per op, int8 (TFLite int8 spec, bit-exact with
 * TensorFlow Lite Micro's reference kernels) and float32.  Activations are
 * NHWC.  Weights are in TFLite layouts: conv [O][KH][KW][I], depthwise
 * [1][KH][KW][C*M], fully connected [O][I].
 *
 * Every parameter block is a `const` struct the generator places in flash,
 * together with the per-channel requantization multipliers and shifts.
 *
 * Spatial kernels (conv, depthwise conv, pools, fully connected) produce their
 * output one row at a time.  When `row` is not NULL each row is computed into
 * that scratch buffer (one output row: out_w * out_c elements) and then copied
 * to the output, so the output may overlap the input as planned by the memory
 * planner (edgecomp/passes/memory_plan.py).  With `row` == NULL the output is
 * written directly and must not overlap the input.
 */
#ifndef EC_KERNELS_H
#define EC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- integer helpers (gemmlowp / TFLite semantics) ------------------------ */

int32_t ec_sat_rounding_doubling_high_mul(int32_t a, int32_t b);
int32_t ec_rounding_divide_by_pot(int32_t x, int exponent);
/* x * multiplier * 2^shift, TFLite's default two-rounding variant; shift > 0 is left. */
int32_t ec_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift);

/* ---- parameter blocks ------------------------------------------------------ */

/* Residual add fused into a convolution's epilogue (TFLite int8 ADD numerics). */
typedef struct {
    int32_t left_shift;
    int32_t input1_offset, input2_offset, output_offset; /* input1 = the conv result */
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max; /* int8 */
    float act_min_f, act_max_f; /* float32 */
} ec_add_params_t;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t depth_multiplier; /* depthwise only */
    int32_t input_offset, filter_offset, output_offset; /* int8 */
    int32_t act_min, act_max; /* int8 */
    float act_min_f, act_max_f; /* float32 */
    const int32_t *multiplier; /* int8: per output channel */
    const int8_t *shift;       /* int8: per output channel, > 0 is left (fits in 8 bits: saves flash) */
    const ec_add_params_t *residual; /* fused residual add, or NULL */
} ec_conv_params_t;

typedef struct {
    int32_t batches, in_features, out_features;
    int32_t input_offset, filter_offset, output_offset;
    int32_t act_min, act_max;
    float act_min_f, act_max_f;
    const int32_t *multiplier; /* int8: per output feature */
    const int8_t *shift;       /* > 0 is left */
    int32_t fast; /* DSP kernels: 1 when every multiplier is in (2^30, 2^31), every shift in [-24, -1] and
                   * every accumulator provably below 2^30 (the one-multiply requantization); else 0 */
} ec_fc_params_t;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
    float act_min_f, act_max_f;
} ec_pool_params_t;

typedef struct {
    int32_t rows, depth;
    int32_t input_multiplier, input_left_shift, diff_min; /* int8 */
    float beta; /* float32 */
} ec_softmax_params_t;

/* ---- helpers shared by the kernel files (common/ec_kernels.c) ------------------- */

/* First and one-past-last kernel tap k with 0 <= origin + k * dilation < size. */
void ec_tap_range(int32_t origin, int32_t dilation, int32_t kernel, int32_t size, int32_t *first, int32_t *end);
/* One element of the int8 ADD (TFLite numerics); a and b are raw int8 values. */
int8_t ec_add_one_s8(const ec_add_params_t *p, int32_t a, int32_t b);

/* ---- int8 kernels ------------------------------------------------------------ */

void ec_conv2d_s8(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip);
void ec_depthwise_conv2d_s8(const ec_conv_params_t *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip);
void ec_fully_connected_s8(const ec_fc_params_t *p, const int8_t *input, const int8_t *filter,
                           const int32_t *bias, int8_t *output, int8_t *row);
void ec_add_s8(const ec_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *output, int32_t size);
void ec_max_pool2d_s8(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
void ec_avg_pool2d_s8(const ec_pool_params_t *p, const int8_t *input, int8_t *output, int8_t *row);
void ec_softmax_s8(const ec_softmax_params_t *p, const int8_t *input, int8_t *output);
void ec_requantize_s8(const int8_t *input, int8_t *output, int32_t size, int32_t input_offset,
                      int32_t multiplier, int32_t shift, int32_t output_offset);
void ec_clamp_s8(const int8_t *input, int8_t *output, int32_t size, int32_t act_min, int32_t act_max);

/* ---- float32 kernels --------------------------------------------------------- */

void ec_conv2d_f32(const ec_conv_params_t *p, const float *input, const float *filter,
                   const float *bias, float *output, float *row, const float *skip);
void ec_depthwise_conv2d_f32(const ec_conv_params_t *p, const float *input, const float *filter,
                             const float *bias, float *output, float *row, const float *skip);
void ec_fully_connected_f32(const ec_fc_params_t *p, const float *input, const float *filter,
                            const float *bias, float *output, float *row);
void ec_add_f32(const ec_add_params_t *p, const float *a, const float *b, float *output, int32_t size);
void ec_max_pool2d_f32(const ec_pool_params_t *p, const float *input, float *output, float *row);
void ec_avg_pool2d_f32(const ec_pool_params_t *p, const float *input, float *output, float *row);
void ec_softmax_f32(const ec_softmax_params_t *p, const float *input, float *output);
void ec_clamp_f32(const float *input, float *output, int32_t size, float act_min, float act_max);

/* ---- conversions and data movement ----------------------------------------- */

/* float -> int8: round(x / scale) half away from zero, + zero_point, saturated. */
void ec_quantize_f32_s8(const float *input, int8_t *output, int32_t size, float scale, int32_t zero_point);
/* int8 -> float: (q - zero_point) * scale in float, as ONNX DequantizeLinear.  The same floats as TFLM's
 * (float)(scale * (q - zero_point)) in double: both are the exact product (24 + 9 bits) rounded once. */
void ec_dequantize_s8_f32(const int8_t *input, float *output, int32_t size, float scale, int32_t zero_point);
/* One input of a concatenation: `outer` blocks of `in_bytes`, written every `out_bytes` from `offset`. */
void ec_concat_part(void *output, const void *input, int32_t outer, int32_t in_bytes, int32_t out_bytes,
                    int32_t offset);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_H */
