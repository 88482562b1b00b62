/*
 * ec_kernels_s4.h - int8 layers whose weights are stored packed: int4 (two per byte) or b-bit
 * indices into a per-layer codebook of int8 values (weight clustering).
 *
 * Numerics are those of the int8 kernels (ec_kernels.h): the packed weights decode to the very
 * int8 values TFLite Micro unpacks an int4 tensor to (UnpackDenseInt4IntoInt8), then the same
 * sums, the same requantization.  Only the storage differs: row o of the filter (out channel o,
 * its kernel_h * kernel_w * in_c or in_features weights in the int8 kernels' order) is a
 * little-endian bit stream of `bits`-bit indices starting on a byte boundary, `row_bytes` bytes
 * a row.  For 4 bits, weight 2j is the low nibble of byte j and 2j + 1 the high one (TFLite's
 * int4 packing).  An index decodes to codebook[index], or without a codebook to the signed
 * `bits`-bit integer it spells (int4: -8..7).
 *
 * Convolutions decode one output channel's weights into `work` (4 * kernel_h * kernel_w * in_c
 * bytes, word aligned, a buffer the generator provides: the filter as int16 pairs for SMLAD on
 * cores with the DSP extension, as int8, then a border window): once per layer when the output is apart from the
 * input (`row` NULL), once per output row in place; fully connected layers decode inline.  With `folded` the bias holds
 * bias + input_offset * sum(w) (the generator's choice when the filter offset is 0) and the sums
 * multiply raw inputs.  Output rows go through `row` exactly like the int8 kernels (in-place contract).
 */
#ifndef EC_KERNELS_S4_H
#define EC_KERNELS_S4_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const uint8_t *indices;   /* out channels x row_bytes */
    const int8_t *codebook;   /* 2^bits int8 values, or NULL: signed bits-bit integers */
    int32_t bits;             /* 1..8 */
    int32_t row_bytes;        /* ceil(weights per row * bits / 8) */
    int32_t folded;           /* 1: the bias holds bias + input_offset * sum(w) (filter offset 0, no dilation) */
    int32_t work_bytes;       /* size of the convolution buffer `work` (a layer whose every channel fits
                               * with one window decodes them all once) */
} ec_packed_weights_t;

/* Weights [start, start + n) of row `row`, decoded to int8. */
void ec_unpack_weights(const ec_packed_weights_t *w, int32_t row, int32_t start, int32_t n, int8_t *out);

void ec_conv2d_s4(const ec_conv_params_t *p, const ec_packed_weights_t *w, const int8_t *input,
                  const int32_t *bias, int8_t *output, int8_t *row, const int8_t *skip, int8_t *work);
void ec_fully_connected_s4(const ec_fc_params_t *p, const ec_packed_weights_t *w, const int8_t *input,
                           const int32_t *bias, int8_t *output, int8_t *row);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_S4_H */
