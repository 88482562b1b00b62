/*
 * ec_kernels_resize.h - resizing the two spatial axes of NHWC tensors: nearest neighbour (any
 * element type) and bilinear (int8 as TensorFlow Lite Micro's ResizeBilinearInteger, float32).
 * The generator computes the tables (which input rows / columns each output row / column reads,
 * and their weights) from the model's rules; the kernels only follow them.
 */
#ifndef EC_KERNELS_RESIZE_H
#define EC_KERNELS_RESIZE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t batches, in_h, in_w, out_h, out_w;
    int32_t pixel_bytes;  /* channels * element bytes */
    const int16_t *rows;  /* out_h entries: the input row each output row copies */
    const int16_t *cols;  /* out_w entries: the input column each output column copies */
} ec_resize_nearest_params_t;

/* Input and output must not overlap. */
void ec_resize_nearest(const ec_resize_nearest_params_t *p, const void *input, void *output);

typedef struct {
    int32_t batches, in_h, in_w, out_h, out_w, channels;
    const int16_t *rows;  /* 3 per output row: input rows i0, i1 and the weight of i1 in 1/1024 */
    const int16_t *cols;  /* 3 per output column: input columns j0, j1, the weight of j1 */
    const float *frows;   /* the weight of i1 per output row (float kernel) */
    const float *fcols;   /* the weight of j1 per output column (float kernel) */
} ec_resize_bilinear_params_t;

/* (x00 (1024 - wy) + x10 wy) (1024 - wx) + (x01 (1024 - wy) + x11 wy) wx, in 2^-20, rounded half
 * away from zero (TFLM's ResizeBilinearInteger; the output in the input's quantization). */
void ec_resize_bilinear_s8(const ec_resize_bilinear_params_t *p, const int8_t *input, int8_t *output);
void ec_resize_bilinear_f32(const ec_resize_bilinear_params_t *p, const float *input, float *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_RESIZE_H */
