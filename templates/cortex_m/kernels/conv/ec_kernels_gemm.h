/*
 * ec_kernels_gemm.h - int8 convolution as a matrix product, for cores with the DSP extension.
 *
 * Same results bit for bit as ec_conv2d_s8 (TFLite Micro numerics).  The generator passes, in
 * the layer's ec_gemm_params_t:
 *
 *  - `wpk`: the filter re-packed at compile time: output channels in pairs, each pair's
 *    weights four at a time, [row 0: 4 bytes][row 1: 4 bytes], block by block (a block is the
 *    whole kernel window, or one kernel row when the layer has little RAM to spare), every
 *    kernel row padded with zero weights to whole words (kernel_w * in_c rounded up to a
 *    multiple of 4);
 *  - `bias`: the folded bias, bias[oc] + input_offset * sum(filter[oc]), padded to an even
 *    count, so padded taps are the input zero point and raw int8 inputs multiply raw weights;
 *  - `work`: EC_GEMM_WORK_BYTES, 4-byte aligned, planned in the arena: two pixels' kernel
 *    windows sign-extended to int16 pairs (the layout SMLAD reads: one 4-word load per 4 taps
 *    of both pixels), a byte buffer for a bordered kernel row (only when in_c is not a
 *    multiple of 4), the accumulators, and with n_live the computed outputs of two pixels before they are scattered.
 *
 * Two output pixels times two output channels per pass of the inner loop; on Cortex-M4/M7 the
 * inner loop is assembly (LDM, LDRD, SXTB16, SMLAD: 14 instructions per 16 MACs; 10 when the
 * weights were widened to int16 into the arena first, `wtile`).  With the int16 weights in flash
 * (--optimize speed) two pixels times four channels (ec_gemm16_2x4, ec_conv2d_gemm16.c: chains of
 * single loads, 14 instructions and 16 estimated Cortex-M4 cycles per 16 MACs).
 */
#ifndef EC_KERNELS_GEMM_H
#define EC_KERNELS_GEMM_H

#include "ec_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ec_gemm_params ec_gemm_params_t;

/* The outputs of a layer with a fused residual add (ec_gemm_store_residual). */
/* The 2x2 block product on widened weights (ec_gemm16_2x2), reached through the layer's params
 * so that models whose layers all read int8 weights do not link it. */
typedef void (*ec_gemm16_fn)(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                             const int32_t *bias);

/* The requantizing store with per-channel constants (ec_gemm_store2k), through the params too. */
typedef void (*ec_gemm_store2k_fn)(const int32_t *acc, int8_t *d0, int8_t *d1, int32_t channel_pairs,
                                   const int32_t *rq);

/* The 2x4 block product with the requantizing store fused (ec_gemm16_2x4_rq), through the params too. */
typedef void (*ec_gemm16_rq_fn)(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t pairs, int32_t k4,
                                const int32_t *rq, int8_t *d1);

typedef void (*ec_gemm_residual_fn)(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc,
                                    int8_t *d0, int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1);

struct ec_gemm_params {
    int32_t kbp;    /* values per block: kernel_h (nb 1) or one (nb kernel_h) kernel rows of kernel_w * in_c
                     * taps each, rounded up to whole words (a multiple of 4) */
    int32_t nb;     /* blocks per output pixel: 1 or kernel_h */
    int32_t chunk;  /* output-channel pairs per pass over a block (all of them when nb > 1) */
    int32_t fast;   /* 1: every shift in [-24, -1] (and the residual's too): the one-multiply requantization;
                     * 0: chosen per channel (see ec_conv2d_gemm.c) */
    int32_t direct; /* 1: outputs written pixel by pixel even in place (the generator checked it is safe) */
    /* constant addresses (flash, arena), in the struct so that the call passes few arguments: the
     * caller's stack frame is part of the RAM a model needs */
    const int8_t *wpk;   /* packed filter (NULL: only the widened copy in `wbuf` exists) */
    const int32_t *bias; /* folded bias */
    int8_t *row;         /* scratch row when the output overlaps the input, else NULL */
    const int8_t *skip;  /* fused residual add's other operand, else NULL */
    int32_t *work;       /* EC_GEMM_WORK_BYTES */
    ec_gemm_residual_fn residual_store; /* ec_gemm_store_residual(_any) when `skip`, else NULL */
    int32_t skip_at_output; /* 1: the skip operand is at the output itself (row-by-row calls) */
    int32_t *add_tables; /* the residual add's rescale tables (EC_GEMM_ADD_TABLE_BYTES), filled by
                          * ec_gemm_add_tables before the layer, or NULL */
    int32_t wtile;       /* > 0 (nb 1 only): the weights of `wtile` output-channel pairs at a time are
                          * widened to int16 into `wbuf` first (EC_GEMM_WBUF_BYTES), then every pixel
                          * pair of the layer runs on them (ec_gemm16_2x2: no sign extension in the
                          * inner loop); 0: the int8 weights are read directly.  With `wpk` NULL the
                          * weights were widened at compile time (--optimize speed): `wbuf` is in
                          * flash and holds every pair (wtile = all of them) */
    const uint32_t *wbuf; /* wtile > 0: the widened weights (arena, or flash when wpk is NULL), else NULL */
    ec_gemm16_fn gemm16; /* wtile > 0: ec_gemm16_2x2, or ec_gemm16_2x2_1 when kbp <= 64, or (weights in
                          * flash, the 2x4 layout) ec_gemm16_2x4, else NULL */
    int32_t n_live;      /* > 0: only these output channels are computed (the others have only zero
                          * weights); wpk, bias and the conv's multiplier and shift hold them alone */
    const uint16_t *live_map; /* n_live > 0: their channel indices */
    const int8_t *dead_row;   /* n_live > 0: one output pixel with the other channels' constant values */
    const int32_t *rq;        /* NULL, or (--optimize speed, `fast`) per computed channel its multiplier M,
                               * s = -shift and (1 + 2 output_offset) << (s - 1) */
    ec_gemm_store2k_fn store2k; /* with rq: ec_gemm_store2k (activation range [-128, 127], an even
                                 * number of channels: the generator checked), else NULL */
    ec_gemm16_rq_fn gemm16rq; /* with rq, or NULL: ec_gemm16_2x4_rq(1) computes and stores every call's
                               * outputs (every call an even number of pairs, no residual add, all channels
                               * computed, one block: the generator checked); wbuf then holds the weights
                               * doubled (2a: the store's SMMLAR operand), rq the doubled folded bias too
                               * (packing.py, fused_store_table), bias is NULL */
};

/* Bytes of `work` for a layer (n_live > 0: two pixels' computed outputs after the accumulators). */
#define EC_GEMM_WORK_BYTES(kbp, in_c, chunk, n_live) \
    ((kbp) * ((in_c) % 4 ? 5 : 4) + 16 * (chunk) + ((2 * (n_live) + 3) & ~3))

#define EC_GEMM_ADD_TABLE_BYTES 2048

/* Bytes of `wbuf`: per output-channel pair and 4 taps, both rows' even and odd int16 pairs. */
#define EC_GEMM_WBUF_BYTES(kbp, wtile) (4 * (kbp) * (wtile))

/* Fill g->add_tables: the fused add's two rescaled inputs (doubled) for each int8 value, so that the add is
 * two table loads, a sum and the output's requantization. */
void ec_gemm_add_tables(const ec_conv_params_t *p, const ec_gemm_params_t *g);

void ec_gemm16_2x2(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                   const int32_t *bias);
/* The same for k4 <= 16 (one pass of the inner loop) */
void ec_gemm16_2x2_1(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                     const int32_t *bias);
/* The same with the weights in units of two channel pairs (--optimize speed: 2 pixels x 4 channels
 * blocks, 16 MACs per six loads in two chains; the layout of packing.py's quad_gemm_weights) */
void ec_gemm16_2x4(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                   const int32_t *bias);
/* The same for k4 <= 16 (one pass) */
void ec_gemm16_2x4_1(const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                     const int32_t *bias);

/* ec_gemm16_2x4 with the store fused: `pairs` (even) channel pairs of one pixel pair into d0 and d1, from
 * doubled weights, each channel requantized as ec_gemm_store2k does; rq: per quad of channels their
 * doubled folded biases, then per channel M, s, k; four words after the last quad (read, not used). */
void ec_gemm16_2x4_rq(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t pairs, int32_t k4,
                      const int32_t *rq, int8_t *d1);
void ec_gemm16_2x4_rq1(const uint32_t *w16, const uint32_t *col, int8_t *d0, int32_t pairs, int32_t k4,
                       const int32_t *rq, int8_t *d1); /* k4 <= 16 */

/* Requantize the accumulators of one pixel pair (2 * channel_pairs channels, laid out as
 * ec_gemm16_2x2 leaves them) into d0 and d1 with each channel's constants from rq (M, s,
 * (1 + 2 zp) << (s - 1)): SMMLAR of 2a and M onto the constant, minus [a < 0], shifted right by s,
 * saturated to int8.  The same result as TFLM where gemm_acc_ok and gemm_fast_requant hold. */
void ec_gemm_store2k(const int32_t *acc, int8_t *d0, int8_t *d1, int32_t channel_pairs, const int32_t *rq);

/* The outputs of a layer with a fused residual add: ..._any for every layer; ec_gemm_store_residual
 * alone where every call has both pixels and all channels on the one-multiply path (the generator
 * checks it, debug builds trap otherwise). */
void ec_gemm_store_residual(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc, int8_t *d0,
                            int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1);
void ec_gemm_store_residual_any(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc,
                                int8_t *d0, int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1);

void ec_conv2d_s8_gemm(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *input, int8_t *output);
/* The same for a layer with g->gemm16rq (its block products store the outputs) */
void ec_conv2d_s8_gemm_rq(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_GEMM_H */
