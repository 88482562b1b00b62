/*
 * ec_kernels_rnn.h - recurrent layers (LSTM, GRU) for edgecomp-generated models.
 *
 * One call runs a layer over its whole input sequence x [steps][in_features] (batch 1) and writes
 * every step's hidden state to y [steps][units] (p->sequence) or only the last one [units].
 * The state (h, then c for an LSTM) lives in a buffer the caller owns and keeps between calls:
 * the generated model resets it before each inference, or, built for streaming, only when asked
 * (ec_state_reset), so a model of one step per call runs a stream frame by frame.
 *
 * int8 LSTM: TensorFlow Lite Micro's integer LSTM (lstm_eval.h), bit-exact: each gate is two
 * fully connected layers to int16 at 2^-12 (x with the bias, h without), added with int16
 * saturation, then TFLM's int16 sigmoid / tanh (Q0.15); the cell state is int16; h is int8.
 * int8 GRU: edgecomp's scheme (docs/internals.md): the same gates, an int16 Q0.15 hidden state,
 * requantized to the int8 output each step.  Weights [gates * units][in] and [gates * units][units]
 * in gate blocks (LSTM: input, forget, cell, output; GRU: update, reset, candidate).
 */
#ifndef EC_KERNELS_RNN_H
#define EC_KERNELS_RNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t steps, in_features, units;
    int32_t sequence; /* 1: y gets every step's hidden state; 0: the last one */
    int32_t kind; /* EC_RNN_LSTM or EC_RNN_GRU */
    int32_t flags; /* EC_RNN_CELL_SIGMOID (LSTM), EC_RNN_LINEAR_BEFORE_RESET (GRU) */
    /* int8 */
    int32_t x_offset, h_offset, h_zp; /* LSTM: -zp(x), -zp(h), zp(h); GRU: -zp(x), 0, zp(y) */
    const int32_t *x_mult; const int8_t *x_shift; /* per row: x -> gate pre-activation (2^-12) */
    const int32_t *h_mult; const int8_t *h_shift; /* per row: h -> gate pre-activation */
    int32_t m1, s1; /* LSTM: forget x cell; GRU: reset x (h or its product) */
    int32_t m2, s2; /* LSTM: input x cell gate */
    int32_t m3, s3; /* LSTM: output x tanh(cell) -> h; GRU: h (Q0.15) -> y */
    int32_t cell_clip; /* LSTM, int16 (0: none) */
    int32_t tanh_mult, tanh_shift; /* LSTM: TFLM's tanh of the cell state */
    const uint16_t *sigmoid_table; /* TFLite's sigmoid_table_uint16 (256 entries) */
    /* float32 */
    float cell_clip_f;
} ec_rnn_params_t;

#define EC_RNN_LSTM 0
#define EC_RNN_GRU 1
#define EC_RNN_CELL_SIGMOID 1
#define EC_RNN_LINEAR_BEFORE_RESET 2

/* Scratch: 4 * units (LSTM) or 8 * units (GRU) gate values (int16 or float). */
void ec_lstm_s8(const ec_rnn_params_t *p, const int8_t *x, const int8_t *w_x, const int8_t *w_h,
                const int32_t *bias, int8_t *h, int16_t *c, int16_t *scratch, int8_t *y);
void ec_lstm_f32(const ec_rnn_params_t *p, const float *x, const float *w_x, const float *w_h,
                 const float *bias, float *h, float *c, float *scratch, float *y);
/* b_x and b_h: [3 * units] each (int32: b_h at 2^-15 times the weights' scale). */
void ec_gru_s8(const ec_rnn_params_t *p, const int8_t *x, const int8_t *w_x, const int8_t *w_h,
               const int32_t *b_x, const int32_t *b_h, int16_t *h, int16_t *scratch, int8_t *y);
void ec_gru_f32(const ec_rnn_params_t *p, const float *x, const float *w_x, const float *w_h,
                const float *b_x, const float *b_h, float *h, float *scratch, float *y);

#ifdef __cplusplus
}
#endif

#endif /* EC_KERNELS_RNN_H */
